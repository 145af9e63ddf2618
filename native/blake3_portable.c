/* BLAKE3, portable C: the compression function, hashing of inputs of any length (chunks,
 * the binary tree of chaining values, keyed and derive-key modes, extendable output), and the
 * scalar path of the fixed-length hash-many kernel.
 *
 * Written from the BLAKE3 specification (O'Connor, Aumasson, Neves, Wilcox-O'Hearn, 2020).
 */
#include "poe_internal.h"

const uint32_t poe_b3_iv[8] = {
    0x6A09E667u, 0xBB67AE85u, 0x3C6EF372u, 0xA54FF53Au,
    0x510E527Fu, 0x9B05688Cu, 0x1F83D9ABu, 0x5BE0CD19u,
};

static inline uint32_t rotr32(uint32_t x, unsigned n) { return (x >> n) | (x << (32u - n)); }

#define G_SCALAR(a, b, c, d, mx, my) \
    do {                             \
        a = a + b + (mx);            \
        d = rotr32(d ^ a, 16);       \
        c = c + d;                   \
        b = rotr32(b ^ c, 12);       \
        a = a + b + (my);            \
        d = rotr32(d ^ a, 8);        \
        c = c + d;                   \
        b = rotr32(b ^ c, 7);        \
    } while (0)

void poe_b3_compress(const uint32_t cv[8], const uint8_t block[64], uint32_t block_len,
                     uint64_t counter, uint32_t flags, uint32_t out[16]) {
    uint32_t m[16];
    for (int i = 0; i < 16; i++) m[i] = poe_load32_le(block + 4 * i);
    uint32_t v0 = cv[0], v1 = cv[1], v2 = cv[2], v3 = cv[3];
    uint32_t v4 = cv[4], v5 = cv[5], v6 = cv[6], v7 = cv[7];
    uint32_t v8 = poe_b3_iv[0], v9 = poe_b3_iv[1], v10 = poe_b3_iv[2], v11 = poe_b3_iv[3];
    uint32_t v12 = (uint32_t)counter, v13 = (uint32_t)(counter >> 32), v14 = block_len, v15 = flags;
    POE_B3_SEVEN_ROUNDS(G_SCALAR, m);
    out[0] = v0 ^ v8;
    out[1] = v1 ^ v9;
    out[2] = v2 ^ v10;
    out[3] = v3 ^ v11;
    out[4] = v4 ^ v12;
    out[5] = v5 ^ v13;
    out[6] = v6 ^ v14;
    out[7] = v7 ^ v15;
    out[8] = v8 ^ cv[0];
    out[9] = v9 ^ cv[1];
    out[10] = v10 ^ cv[2];
    out[11] = v11 ^ cv[3];
    out[12] = v12 ^ cv[4];
    out[13] = v13 ^ cv[5];
    out[14] = v14 ^ cv[6];
    out[15] = v15 ^ cv[7];
}

/* A compression not yet performed: what the root (or any node) needs before its output is read,
 * so that the root can be compressed with the ROOT flag and any output block counter. */
typedef struct {
    uint32_t cv[8];
    uint8_t block[64];
    uint32_t block_len;
    uint64_t counter;
    uint32_t flags;
} pending_t;

static void pending_cv(const pending_t *p, uint32_t cv[8]) {
    uint32_t out[16];
    poe_b3_compress(p->cv, p->block, p->block_len, p->counter, p->flags, out);
    memcpy(cv, out, 8 * sizeof(uint32_t));
}

/* Chaining value of one complete, non-final chunk (exactly 1024 bytes). */
static void chunk_cv(const uint8_t *chunk, uint64_t chunk_index, const uint32_t key[8],
                     uint32_t flags, uint32_t cv[8]) {
    uint32_t out[16];
    memcpy(cv, key, 8 * sizeof(uint32_t));
    for (size_t b = 0; b < B3_CHUNK_LEN / B3_BLOCK_LEN; b++) {
        uint32_t f = flags;
        if (b == 0) f |= B3_CHUNK_START;
        if (b == B3_CHUNK_LEN / B3_BLOCK_LEN - 1) f |= B3_CHUNK_END;
        poe_b3_compress(cv, chunk + b * B3_BLOCK_LEN, B3_BLOCK_LEN, chunk_index, f, out);
        memcpy(cv, out, 8 * sizeof(uint32_t));
    }
}

/* The last chunk (1..1024 bytes, or 0 bytes for the empty message): every block but the last
 * is compressed; the last one is left pending. */
static void last_chunk(const uint8_t *chunk, size_t len, uint64_t chunk_index,
                       const uint32_t key[8], uint32_t flags, pending_t *p) {
    uint32_t cv[8], out[16];
    memcpy(cv, key, sizeof cv);
    size_t nblocks = len == 0 ? 1 : (len + B3_BLOCK_LEN - 1) / B3_BLOCK_LEN;
    for (size_t b = 0; b + 1 < nblocks; b++) {
        uint32_t f = flags | (b == 0 ? B3_CHUNK_START : 0u);
        poe_b3_compress(cv, chunk + b * B3_BLOCK_LEN, B3_BLOCK_LEN, chunk_index, f, out);
        memcpy(cv, out, sizeof cv);
    }
    size_t tail = len - (nblocks - 1) * B3_BLOCK_LEN;
    memcpy(p->cv, cv, sizeof cv);
    memset(p->block, 0, sizeof p->block);
    if (tail) memcpy(p->block, chunk + (nblocks - 1) * B3_BLOCK_LEN, tail);
    p->block_len = (uint32_t)tail;
    p->counter = chunk_index;
    p->flags = flags | B3_CHUNK_END | (nblocks == 1 ? B3_CHUNK_START : 0u);
}

static void parent_pending(const uint32_t left[8], const uint32_t right[8], const uint32_t key[8],
                           uint32_t flags, pending_t *p) {
    memcpy(p->cv, key, 8 * sizeof(uint32_t));
    for (int i = 0; i < 8; i++) {
        poe_store32_le(p->block + 4 * i, left[i]);
        poe_store32_le(p->block + 32 + 4 * i, right[i]);
    }
    p->block_len = B3_BLOCK_LEN;
    p->counter = 0;
    p->flags = flags | B3_PARENT;
}

static void parent_cv(const uint32_t left[8], const uint32_t right[8], const uint32_t key[8],
                      uint32_t flags, uint32_t cv[8]) {
    pending_t p;
    parent_pending(left, right, key, flags, &p);
    pending_cv(&p, cv);
}

/* Read the root's output: 64-byte output blocks with counter 0, 1, 2, ... */
static void root_output(const pending_t *p, uint8_t *out, size_t out_len) {
    uint32_t words[16];
    uint64_t counter = 0;
    while (out_len > 0) {
        poe_b3_compress(p->cv, p->block, p->block_len, counter, p->flags | B3_ROOT, words);
        uint8_t bytes[64];
        for (int i = 0; i < 16; i++) poe_store32_le(bytes + 4 * i, words[i]);
        size_t take = out_len < 64 ? out_len : 64;
        memcpy(out, bytes, take);
        out += take;
        out_len -= take;
        counter++;
    }
}

void poe_b3_hash(const uint8_t *data, size_t len, const uint32_t key[8], uint32_t flags,
                 uint8_t *out, size_t out_len) {
    /* Chunks are the leaves; the tree over them is built left to right with a stack of
     * chaining values of complete subtrees. After chunk number t (1-based) is added, the stack
     * holds one subtree per set bit of t; every time t gains a trailing zero, two subtrees of
     * equal size merge. Only chunks known not to be the last are merged eagerly, so the final
     * chunk and the final merges stay pending and the root can take the ROOT flag. */
    uint32_t stack[64][8];
    size_t depth = 0;
    size_t nchunks = len == 0 ? 1 : (len + B3_CHUNK_LEN - 1) / B3_CHUNK_LEN;
    uint64_t index;
    for (index = 0; index + 1 < nchunks; index++) {
        uint32_t cv[8];
        chunk_cv(data + index * B3_CHUNK_LEN, index, key, flags, cv);
        uint64_t total = index + 1;
        while ((total & 1u) == 0) {
            depth--;
            parent_cv(stack[depth], cv, key, flags, cv);
            total >>= 1;
        }
        memcpy(stack[depth], cv, sizeof cv);
        depth++;
    }
    pending_t p;
    size_t offset = (size_t)index * B3_CHUNK_LEN;
    last_chunk(data + offset, len - offset, index, key, flags, &p);
    while (depth > 0) {
        uint32_t right[8];
        pending_cv(&p, right);
        depth--;
        parent_pending(stack[depth], right, key, flags, &p);
    }
    root_output(&p, out, out_len);
}

void poe_b3_context_key(const uint8_t *context, size_t context_len, uint32_t key_words[8]) {
    uint8_t key[32];
    poe_b3_hash(context, context_len, poe_b3_iv, B3_DERIVE_KEY_CONTEXT, key, sizeof key);
    for (int i = 0; i < 8; i++) key_words[i] = poe_load32_le(key + 4 * i);
}

void poe_hash_many_portable(const uint8_t *in, size_t in_stride, size_t n, size_t full_blocks,
                            const uint32_t key[8], uint32_t flags, uint8_t *out,
                            size_t out_stride) {
    for (size_t i = 0; i < n; i++) {
        const uint8_t *msg = in + i * in_stride;
        uint32_t cv[8], words[16];
        uint8_t tail[64];
        memcpy(cv, key, sizeof cv);
        for (size_t b = 0; b < full_blocks; b++) {
            uint32_t f = flags | (b == 0 ? B3_CHUNK_START : 0u);
            poe_b3_compress(cv, msg + b * B3_BLOCK_LEN, B3_BLOCK_LEN, 0, f, words);
            memcpy(cv, words, sizeof cv);
        }
        memcpy(tail, msg + full_blocks * B3_BLOCK_LEN, 32);
        memset(tail + 32, 0, 32);
        uint32_t f = flags | B3_CHUNK_END | B3_ROOT | (full_blocks == 0 ? B3_CHUNK_START : 0u);
        poe_b3_compress(cv, tail, 32, 0, f, words);
        uint8_t *dst = out + i * out_stride;
        for (int w = 0; w < 8; w++) poe_store32_le(dst + 4 * w, words[w]);
    }
}

/* Chaining values of non-root chunks and parents (memtree.c), one input at a time. */
void poe_cv_many_portable(const poe_cv_batch *b, size_t n) {
    for (size_t i = 0; i < n; i++) {
        const uint8_t *msg = poe_cv_input(b, i);
        uint64_t counter = poe_cv_counter(b, i);
        uint32_t cv[8], words[16];
        memcpy(cv, b->key, sizeof cv);
        for (size_t k = 0; k < b->blocks; k++) {
            uint32_t f = b->flags;
            if (k == 0) f |= b->flags_first;
            if (k + 1 == b->blocks) f |= b->flags_last;
            poe_b3_compress(cv, msg + k * B3_BLOCK_LEN, B3_BLOCK_LEN, counter, f, words);
            memcpy(cv, words, sizeof cv);
        }
        uint8_t *dst = poe_cv_output(b, i);
        for (int w = 0; w < 8; w++) poe_store32_le(dst + 4 * w, cv[w]);
    }
}

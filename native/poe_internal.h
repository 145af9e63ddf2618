/* Internal declarations shared by the native sources (not part of the cffi interface). */
#ifndef POE_INTERNAL_H
#define POE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define POE_ABI_VERSION 2

#define POE_RECORD_LEN 288
#define POE_HASH_LEN 32
#define POE_SUMS_LEN 48
#define POE_NODE_LEN (POE_HASH_LEN + POE_SUMS_LEN) /* hash ‖ sums, the layout used internally */

/* BLAKE3 constants (BLAKE3 specification §2). */
#define B3_BLOCK_LEN 64
#define B3_CHUNK_LEN 1024
#define B3_CHUNK_START 1u
#define B3_CHUNK_END 2u
#define B3_PARENT 4u
#define B3_ROOT 8u
#define B3_KEYED_HASH 16u
#define B3_DERIVE_KEY_CONTEXT 32u
#define B3_DERIVE_KEY_MATERIAL 64u

extern const uint32_t poe_b3_iv[8];

/* SIMD kernels exist for x86-64 with GCC or Clang (target attributes, cpu checks); building with
 * -DPOE_HAVE_X86_SIMD=0 leaves only the portable path, as on every other architecture. */
#ifndef POE_HAVE_X86_SIMD
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define POE_HAVE_X86_SIMD 1
#else
#define POE_HAVE_X86_SIMD 0
#endif
#endif

/* Hash n equal-length inputs, each a single BLAKE3 chunk of exactly full_blocks * 64 + 32 bytes
 * (full_blocks <= 14), as the root of its own tree: the whole message keyed by key, every block
 * carrying `flags` (the mode flag) plus CHUNK_START / CHUNK_END | ROOT where they belong.
 * Input i starts at in + i * in_stride; its 32-byte hash goes to out + i * out_stride.
 * An implementation must read all of a group's inputs before writing that group's outputs, and
 * handle groups in increasing order, so that out may alias in when out_stride <= in_stride / 2
 * (levels are reduced in place). */
typedef void (*poe_hash_many_fn)(const uint8_t *in, size_t in_stride, size_t n, size_t full_blocks,
                                 const uint32_t key[8], uint32_t flags, uint8_t *out,
                                 size_t out_stride);

void poe_hash_many_portable(const uint8_t *in, size_t in_stride, size_t n, size_t full_blocks,
                            const uint32_t key[8], uint32_t flags, uint8_t *out, size_t out_stride);
#if POE_HAVE_X86_SIMD
void poe_hash_many_avx2(const uint8_t *in, size_t in_stride, size_t n, size_t full_blocks,
                        const uint32_t key[8], uint32_t flags, uint8_t *out, size_t out_stride);
void poe_hash_many_avx512(const uint8_t *in, size_t in_stride, size_t n, size_t full_blocks,
                          const uint32_t key[8], uint32_t flags, uint8_t *out, size_t out_stride);
#endif

/* Chaining values of n inputs that are NOT roots (BLAKE3 chunks and parents inside a tree), each
 * of `blocks` full 64-byte blocks, with a counter per input; the kernel behind memtree.c.
 * index(i) = idx[i], or i when idx is NULL. Input i is at ptrs[i] when ptrs is non-NULL, else at
 * base + index(i) * stride. Its counter is counter + index(i) when counter_by_index, else counter
 * (chunks: the chunk index; parents: 0). Every block carries `flags`, the first block also
 * flags_first and the last also flags_last (chunks: CHUNK_START / CHUNK_END; parents: PARENT with
 * no first/last flags; a standalone 1 KiB message: CHUNK_END | ROOT on the last, counter 0).
 * The 32-byte output (the first 8 words of the last compression) goes to
 * out + 32 * (out_by_index ? index(i) : i). Inputs and outputs must not overlap. */
typedef struct {
    const uint8_t *base;
    size_t stride;
    const uint32_t *idx;
    const uint8_t *const *ptrs;
    size_t blocks;
    const uint32_t *key;
    uint64_t counter;
    int counter_by_index;
    uint32_t flags;
    uint32_t flags_first;
    uint32_t flags_last;
    uint8_t *out;
    int out_by_index;
} poe_cv_batch;

typedef void (*poe_cv_many_fn)(const poe_cv_batch *b, size_t n);

void poe_cv_many_portable(const poe_cv_batch *b, size_t n);
#if POE_HAVE_X86_SIMD
void poe_cv_many_avx2(const poe_cv_batch *b, size_t n);
void poe_cv_many_avx512(const poe_cv_batch *b, size_t n);
#endif

/* Address, counter and output slot of input i of a batch (shared by the kernels). */
static inline size_t poe_cv_index(const poe_cv_batch *b, size_t i) { return b->idx ? (size_t)b->idx[i] : i; }

static inline const uint8_t *poe_cv_input(const poe_cv_batch *b, size_t i) {
    return b->ptrs ? b->ptrs[i] : b->base + poe_cv_index(b, i) * b->stride;
}

static inline uint64_t poe_cv_counter(const poe_cv_batch *b, size_t i) {
    return b->counter_by_index ? b->counter + (uint64_t)poe_cv_index(b, i) : b->counter;
}

static inline uint8_t *poe_cv_output(const poe_cv_batch *b, size_t i) {
    return b->out + 32 * (b->out_by_index ? poe_cv_index(b, i) : i);
}

/* The portable compression function: the full 16-word output of compressing one block. */
void poe_b3_compress(const uint32_t cv[8], const uint8_t block[64], uint32_t block_len,
                     uint64_t counter, uint32_t flags, uint32_t out[16]);

/* BLAKE3 of a message of any length, keyed by key_words and with mode flag `flags`
 * (0, B3_KEYED_HASH, B3_DERIVE_KEY_CONTEXT or B3_DERIVE_KEY_MATERIAL); out_len bytes of output. */
void poe_b3_hash(const uint8_t *data, size_t len, const uint32_t key_words[8], uint32_t flags,
                 uint8_t *out, size_t out_len);

/* The context key of a derive-key context string. */
void poe_b3_context_key(const uint8_t *context, size_t context_len, uint32_t key_words[8]);

static inline uint32_t poe_load32_le(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static inline void poe_store32_le(uint8_t *p, uint32_t x) {
    p[0] = (uint8_t)x;
    p[1] = (uint8_t)(x >> 8);
    p[2] = (uint8_t)(x >> 16);
    p[3] = (uint8_t)(x >> 24);
}

static inline uint64_t poe_load64_le(const uint8_t *p) {
    return (uint64_t)poe_load32_le(p) | ((uint64_t)poe_load32_le(p + 4) << 32);
}

static inline void poe_store64_le(uint8_t *p, uint64_t x) {
    poe_store32_le(p, (uint32_t)x);
    poe_store32_le(p + 4, (uint32_t)(x >> 32));
}

/* The seven rounds of the compression function, in terms of a G(a, b, c, d, mx, my) macro
 * working on variables v0..v15 and message words M[0..15]; the message schedule is written out
 * round by round (round r uses the message permuted r times). */
#define POE_B3_ROUND(G, M, s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11, s12, s13, s14, s15) \
    G(v0, v4, v8, v12, M[s0], M[s1]);                                                              \
    G(v1, v5, v9, v13, M[s2], M[s3]);                                                              \
    G(v2, v6, v10, v14, M[s4], M[s5]);                                                             \
    G(v3, v7, v11, v15, M[s6], M[s7]);                                                             \
    G(v0, v5, v10, v15, M[s8], M[s9]);                                                             \
    G(v1, v6, v11, v12, M[s10], M[s11]);                                                           \
    G(v2, v7, v8, v13, M[s12], M[s13]);                                                            \
    G(v3, v4, v9, v14, M[s14], M[s15])

#define POE_B3_SEVEN_ROUNDS(G, M)                                                  \
    do {                                                                           \
        POE_B3_ROUND(G, M, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15); \
        POE_B3_ROUND(G, M, 2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8); \
        POE_B3_ROUND(G, M, 3, 4, 10, 12, 13, 2, 7, 14, 6, 5, 9, 0, 11, 15, 8, 1); \
        POE_B3_ROUND(G, M, 10, 7, 12, 9, 14, 3, 13, 15, 4, 0, 11, 2, 5, 8, 1, 6); \
        POE_B3_ROUND(G, M, 12, 13, 9, 11, 15, 10, 14, 8, 7, 2, 5, 3, 0, 1, 6, 4); \
        POE_B3_ROUND(G, M, 9, 14, 11, 5, 8, 12, 15, 1, 13, 3, 0, 10, 2, 6, 4, 7); \
        POE_B3_ROUND(G, M, 11, 15, 5, 0, 1, 9, 8, 6, 14, 10, 2, 12, 3, 4, 7, 13); \
    } while (0)

#endif

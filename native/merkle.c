/* poe's Merkle sum tree (docs/spec.md §10) over the fixed-length hash-many kernels, the choice
 * of kernel at run time, and the exported entry points declared in poe_native.h. */
#include <stdlib.h>

#include "poe_internal.h"
#include "poe_native.h"

/* ---------------------------------------------------------------- kernel choice */

enum { PATH_SCALAR = 0, PATH_AVX2 = 1, PATH_AVX512 = 2, PATH_AUTO = 3, PATH_UNKNOWN = -1 };

static const char *const PATH_NAMES[3] = {"scalar", "avx2", "avx512"};

static poe_hash_many_fn g_hash_many = poe_hash_many_portable;
static int g_path = PATH_SCALAR;
static uint32_t g_leaf_key[8];
static uint32_t g_node_key[8];
static uint8_t g_empty_hash[32];
static volatile int g_ready = 0;

static const char CTX_LEAF[] = "poe 2026-11 merkle leaf v1";
static const char CTX_NODE[] = "poe 2026-11 merkle node v1";
static const char CTX_EMPTY[] = "poe 2026-11 merkle empty v1";

static int path_from_name(const char *name) {
    if (name == NULL || name[0] == '\0' || strcmp(name, "auto") == 0) return PATH_AUTO;
    for (int i = 0; i < 3; i++)
        if (strcmp(name, PATH_NAMES[i]) == 0) return i;
    return PATH_UNKNOWN;
}

static int path_supported(int path) {
    if (path == PATH_SCALAR) return 1;
#if POE_HAVE_X86_SIMD
    __builtin_cpu_init();
    if (path == PATH_AVX2) return __builtin_cpu_supports("avx2") ? 1 : 0;
    if (path == PATH_AVX512)
        return (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")) ? 1 : 0;
#endif
    return 0;
}

static int best_path(void) {
    if (path_supported(PATH_AVX512)) return PATH_AVX512;
    if (path_supported(PATH_AVX2)) return PATH_AVX2;
    return PATH_SCALAR;
}

static void use_path(int path) {
    switch (path) {
#if POE_HAVE_X86_SIMD
    case PATH_AVX512: g_hash_many = poe_hash_many_avx512; break;
    case PATH_AVX2: g_hash_many = poe_hash_many_avx2; break;
#endif
    default: path = PATH_SCALAR; g_hash_many = poe_hash_many_portable; break;
    }
    g_path = path;
}

#if defined(__GNUC__) || defined(__clang__)
__attribute__((constructor))
#endif
static void poe_native_init(void) {
    if (g_ready) return;
    poe_b3_context_key((const uint8_t *)CTX_LEAF, sizeof CTX_LEAF - 1, g_leaf_key);
    poe_b3_context_key((const uint8_t *)CTX_NODE, sizeof CTX_NODE - 1, g_node_key);
    uint32_t empty_key[8];
    poe_b3_context_key((const uint8_t *)CTX_EMPTY, sizeof CTX_EMPTY - 1, empty_key);
    poe_b3_hash((const uint8_t *)"", 0, empty_key, B3_DERIVE_KEY_MATERIAL, g_empty_hash, 32);
    /* POE_NATIVE_SIMD=scalar|avx2|avx512 forces a path; one this CPU lacks (or an unknown
     * value) falls back to the best one available. */
    int path = path_from_name(getenv("POE_NATIVE_SIMD"));
    if (path < 0 || path == PATH_AUTO || !path_supported(path)) path = best_path();
    use_path(path);
    g_ready = 1;
}

static void ensure_ready(void) {
    if (!g_ready) poe_native_init();
}

int poe_abi_version(void) { return POE_ABI_VERSION; }

const char *poe_simd_path(void) {
    ensure_ready();
    return PATH_NAMES[g_path];
}

int poe_simd_supported(const char *name) {
    int path = path_from_name(name);
    if (path == PATH_AUTO) return 1;
    if (path < 0) return 0;
    return path_supported(path);
}

int poe_set_simd_path(const char *name) {
    ensure_ready();
    int path = path_from_name(name);
    if (path == PATH_UNKNOWN) return POE_ERR_ARGUMENT;
    if (path == PATH_AUTO) path = best_path();
    if (!path_supported(path)) return POE_ERR_ARGUMENT;
    use_path(path);
    return POE_OK;
}

/* ---------------------------------------------------------------- BLAKE3 */

int poe_blake3(const uint8_t *data, size_t len, int mode, const uint8_t *key,
               const uint8_t *context, size_t context_len, uint8_t *out, size_t out_len) {
    static const uint8_t nothing[1] = {0};
    uint32_t key_words[8];
    uint32_t flags;
    if (data == NULL) {
        if (len != 0) return POE_ERR_ARGUMENT;
        data = nothing;
    }
    switch (mode) {
    case POE_MODE_HASH:
        memcpy(key_words, poe_b3_iv, sizeof key_words);
        flags = 0;
        break;
    case POE_MODE_KEYED:
        if (key == NULL) return POE_ERR_ARGUMENT;
        for (int i = 0; i < 8; i++) key_words[i] = poe_load32_le(key + 4 * i);
        flags = B3_KEYED_HASH;
        break;
    case POE_MODE_DERIVE_KEY:
        if (context == NULL) {
            if (context_len != 0) return POE_ERR_ARGUMENT;
            context = nothing;
        }
        poe_b3_context_key(context, context_len, key_words);
        flags = B3_DERIVE_KEY_MATERIAL;
        break;
    default: return POE_ERR_ARGUMENT;
    }
    if (out_len > 0 && out == NULL) return POE_ERR_ARGUMENT;
    poe_b3_hash(data, len, key_words, flags, out, out_len);
    return POE_OK;
}

/* ---------------------------------------------------------------- sums */

/* out = a + b over the three u128 components; returns 1 on overflow (out then unspecified).
 * out may alias a or b. */
static int sums_add(uint8_t *out, const uint8_t *a, const uint8_t *b) {
    int overflow = 0;
    uint64_t r[6];
    for (int k = 0; k < 3; k++) {
        uint64_t alo = poe_load64_le(a + 16 * k), ahi = poe_load64_le(a + 16 * k + 8);
        uint64_t blo = poe_load64_le(b + 16 * k), bhi = poe_load64_le(b + 16 * k + 8);
        uint64_t lo = alo + blo;
        uint64_t carry = lo < alo;
        uint64_t hi = ahi + bhi;
        overflow |= hi < ahi;
        uint64_t hi2 = hi + carry;
        overflow |= hi2 < hi;
        r[2 * k] = lo;
        r[2 * k + 1] = hi2;
    }
    for (int i = 0; i < 6; i++) poe_store64_le(out + 8 * i, r[i]);
    return overflow;
}

/* The sums of a record (spec §10): fuel @16, mem @32, io = input @40 + output @48. */
static void leaf_sums(const uint8_t *record, uint8_t *out) {
    uint64_t fuel = poe_load64_le(record + 16);
    uint64_t mem = poe_load64_le(record + 32);
    uint64_t in = poe_load64_le(record + 40), outb = poe_load64_le(record + 48);
    uint64_t io = in + outb;
    poe_store64_le(out + 0, fuel);
    poe_store64_le(out + 8, 0);
    poe_store64_le(out + 16, mem);
    poe_store64_le(out + 24, 0);
    poe_store64_le(out + 32, io);
    poe_store64_le(out + 40, io < in ? 1u : 0u);
}

/* ---------------------------------------------------------------- levels */

#define LEAF_FULL_BLOCKS 4 /* 288 = 4 * 64 + 32 */
#define NODE_FULL_BLOCKS 2 /* 160 = 2 * 64 + 32 */

static void hash_leaves(const uint8_t *records, size_t n, uint8_t *hashes, size_t hash_stride,
                        uint8_t *sums, size_t sums_stride) {
    g_hash_many(records, POE_RECORD_LEN, n, LEAF_FULL_BLOCKS, g_leaf_key, B3_DERIVE_KEY_MATERIAL,
                hashes, hash_stride);
    for (size_t i = 0; i < n; i++) leaf_sums(records + i * POE_RECORD_LEN, sums + i * sums_stride);
}

int poe_leaf_hashes(const uint8_t *records, size_t n, uint8_t *hashes, uint8_t *sums) {
    ensure_ready();
    if (n == 0) return POE_OK;
    if (records == NULL || hashes == NULL || sums == NULL) return POE_ERR_ARGUMENT;
    hash_leaves(records, n, hashes, POE_HASH_LEN, sums, POE_SUMS_LEN);
    return POE_OK;
}

/* Reduce `count` nodes laid out as 80-byte slots (hash ‖ sums) to the next level, in place.
 * The kernel handles pairs in increasing order and reads a group before writing it, and
 * parent i (slot i) only ever overwrites slots below 2i, so nothing is read after it is
 * overwritten; the sums pass runs after the hash pass for the same reason. */
static int reduce_slots(uint8_t *slots, size_t count, size_t *out_count) {
    size_t pairs = count / 2;
    g_hash_many(slots, 2 * POE_NODE_LEN, pairs, NODE_FULL_BLOCKS, g_node_key,
                B3_DERIVE_KEY_MATERIAL, slots, POE_NODE_LEN);
    for (size_t i = 0; i < pairs; i++) {
        if (sums_add(slots + i * POE_NODE_LEN + POE_HASH_LEN,
                     slots + 2 * i * POE_NODE_LEN + POE_HASH_LEN,
                     slots + (2 * i + 1) * POE_NODE_LEN + POE_HASH_LEN))
            return POE_ERR_OVERFLOW;
    }
    if (count & 1u) memmove(slots + pairs * POE_NODE_LEN, slots + (count - 1) * POE_NODE_LEN, POE_NODE_LEN);
    *out_count = pairs + (count & 1u);
    return POE_OK;
}

#define PARENT_BATCH 512 /* parents packed per round in poe_parent_level */

int poe_parent_level(const uint8_t *hashes, const uint8_t *sums, size_t n, uint8_t *out_hashes,
                     uint8_t *out_sums) {
    ensure_ready();
    if (n == 0) return POE_OK;
    if (hashes == NULL || sums == NULL || out_hashes == NULL || out_sums == NULL)
        return POE_ERR_ARGUMENT;
    size_t pairs = n / 2;
    uint8_t *pack = NULL;
    if (pairs > 0) {
        size_t cap = pairs < PARENT_BATCH ? pairs : PARENT_BATCH;
        pack = (uint8_t *)malloc(cap * 2 * POE_NODE_LEN);
        if (pack == NULL) return POE_ERR_NOMEM;
    }
    for (size_t base = 0; base < pairs; base += PARENT_BATCH) {
        size_t cnt = pairs - base < PARENT_BATCH ? pairs - base : PARENT_BATCH;
        for (size_t k = 0; k < cnt; k++) {
            size_t left = 2 * (base + k);
            uint8_t *msg = pack + k * 2 * POE_NODE_LEN;
            memcpy(msg, hashes + left * POE_HASH_LEN, POE_HASH_LEN);
            memcpy(msg + 32, sums + left * POE_SUMS_LEN, POE_SUMS_LEN);
            memcpy(msg + 80, hashes + (left + 1) * POE_HASH_LEN, POE_HASH_LEN);
            memcpy(msg + 112, sums + (left + 1) * POE_SUMS_LEN, POE_SUMS_LEN);
            if (sums_add(out_sums + (base + k) * POE_SUMS_LEN, msg + 32, msg + 112)) {
                free(pack);
                return POE_ERR_OVERFLOW;
            }
        }
        g_hash_many(pack, 2 * POE_NODE_LEN, cnt, NODE_FULL_BLOCKS, g_node_key,
                    B3_DERIVE_KEY_MATERIAL, out_hashes + base * POE_HASH_LEN, POE_HASH_LEN);
    }
    free(pack);
    if (n & 1u) {
        memcpy(out_hashes + pairs * POE_HASH_LEN, hashes + (n - 1) * POE_HASH_LEN, POE_HASH_LEN);
        memcpy(out_sums + pairs * POE_SUMS_LEN, sums + (n - 1) * POE_SUMS_LEN, POE_SUMS_LEN);
    }
    return POE_OK;
}

/* Leaves are hashed and reduced in blocks of ROOT_BLOCK (a power of two) so the working set
 * stays in cache: level-by-level pairing is aligned, so each block reduces to the node that
 * the whole-tree reduction would produce for it, and the block nodes then reduce the same way. */
#define ROOT_BLOCK 2048

int poe_merkle_root(const uint8_t *records, size_t n, uint8_t *hash, uint8_t *sums) {
    ensure_ready();
    if (hash == NULL || sums == NULL) return POE_ERR_ARGUMENT;
    if (n == 0) {
        memcpy(hash, g_empty_hash, 32);
        memset(sums, 0, POE_SUMS_LEN);
        return POE_OK;
    }
    if (records == NULL) return POE_ERR_ARGUMENT;
    size_t nblocks = (n + ROOT_BLOCK - 1) / ROOT_BLOCK;
    size_t block_cap = n < ROOT_BLOCK ? n : ROOT_BLOCK;
    uint8_t *work = (uint8_t *)malloc(block_cap * POE_NODE_LEN);
    uint8_t *tops = (uint8_t *)malloc(nblocks * POE_NODE_LEN);
    int rc = POE_OK;
    if (work == NULL || tops == NULL) {
        rc = POE_ERR_NOMEM;
        goto done;
    }
    for (size_t b = 0; b < nblocks; b++) {
        size_t first = b * ROOT_BLOCK;
        size_t count = n - first < ROOT_BLOCK ? n - first : ROOT_BLOCK;
        hash_leaves(records + first * POE_RECORD_LEN, count, work, POE_NODE_LEN, work + POE_HASH_LEN,
                    POE_NODE_LEN);
        while (count > 1) {
            rc = reduce_slots(work, count, &count);
            if (rc != POE_OK) goto done;
        }
        memcpy(tops + b * POE_NODE_LEN, work, POE_NODE_LEN);
    }
    size_t count = nblocks;
    while (count > 1) {
        rc = reduce_slots(tops, count, &count);
        if (rc != POE_OK) goto done;
    }
    memcpy(hash, tops, POE_HASH_LEN);
    memcpy(sums, tops + POE_HASH_LEN, POE_SUMS_LEN);
done:
    free(work);
    free(tops);
    return rc;
}

/* ---------------------------------------------------------------- inclusion proofs */

/* The path length an inclusion proof for leaf `index` of a tree of `size` leaves must have:
 * the number of steps of the verification loop until sn reaches 0 (size >= 1, index < size). */
static size_t expected_path_len(uint64_t fn, uint64_t sn) {
    size_t k = 0;
    while (sn != 0) {
        if ((fn & 1u) == 0 && fn == sn) {
            while ((fn & 1u) == 0 && fn != 0) {
                fn >>= 1;
                sn >>= 1;
            }
        }
        fn >>= 1;
        sn >>= 1;
        k++;
    }
    return k;
}

#define VERIFY_BATCH 256
#define RESULT_PENDING (-1)

typedef struct {
    uint8_t node[POE_NODE_LEN]; /* r: hash ‖ sums */
    uint64_t fn, sn;
    uint64_t pos, end; /* next path entry, one past the last */
} proof_state_t;

int poe_verify_inclusion_many(size_t m, const uint8_t *leaf_hashes, const uint8_t *leaf_sums,
                              const uint64_t *indices, const uint64_t *sizes,
                              const uint64_t *path_offsets, const uint8_t *path,
                              size_t n_entries,
                              const uint8_t *root_hashes, const uint8_t *root_sums,
                              size_t n_roots, int32_t *results) {
    ensure_ready();
    if (m == 0) return POE_OK;
    if (n_roots != 1 && n_roots != m) return POE_ERR_ARGUMENT;
    if (leaf_hashes == NULL || leaf_sums == NULL || indices == NULL || sizes == NULL ||
        path_offsets == NULL || root_hashes == NULL || root_sums == NULL || results == NULL)
        return POE_ERR_ARGUMENT;
    if (n_entries > 0 && path == NULL) return POE_ERR_ARGUMENT;

    size_t cap = m < VERIFY_BATCH ? m : VERIFY_BATCH;
    proof_state_t *st = (proof_state_t *)malloc(cap * sizeof *st);
    uint8_t *msgs = (uint8_t *)malloc(cap * 2 * POE_NODE_LEN);
    uint8_t *outs = (uint8_t *)malloc(cap * POE_HASH_LEN);
    size_t *live = (size_t *)malloc(cap * sizeof *live);
    if (st == NULL || msgs == NULL || outs == NULL || live == NULL) {
        free(st);
        free(msgs);
        free(outs);
        free(live);
        return POE_ERR_NOMEM;
    }

    for (size_t base = 0; base < m; base += VERIFY_BATCH) {
        size_t cnt = m - base < VERIFY_BATCH ? m - base : VERIFY_BATCH;
        for (size_t k = 0; k < cnt; k++) {
            size_t i = base + k;
            proof_state_t *s = &st[k];
            uint64_t start = path_offsets[i], end = path_offsets[i + 1];
            s->pos = s->end = 0;
            if (start > end || end > (uint64_t)n_entries) {
                results[i] = POE_PROOF_BAD_ARGUMENT;
                continue;
            }
            if (indices[i] >= sizes[i]) {
                results[i] = POE_PROOF_BAD_INDEX;
                continue;
            }
            if (end - start != expected_path_len(indices[i], sizes[i] - 1)) {
                results[i] = POE_PROOF_BAD_PATH_LENGTH;
                continue;
            }
            memcpy(s->node, leaf_hashes + i * POE_HASH_LEN, POE_HASH_LEN);
            memcpy(s->node + POE_HASH_LEN, leaf_sums + i * POE_SUMS_LEN, POE_SUMS_LEN);
            s->fn = indices[i];
            s->sn = sizes[i] - 1;
            s->pos = start;
            s->end = end;
            results[i] = RESULT_PENDING;
        }
        /* One tree level per pass: every proof with entries left takes one step, and the
         * node hashes of the step are computed together by the kernel. */
        for (;;) {
            size_t nlive = 0;
            for (size_t k = 0; k < cnt; k++) {
                proof_state_t *s = &st[k];
                if (results[base + k] != RESULT_PENDING || s->pos >= s->end) continue;
                const uint8_t *entry = path + s->pos * POE_NODE_LEN;
                const uint8_t *ps = entry + POE_HASH_LEN;
                uint8_t *msg = msgs + nlive * 2 * POE_NODE_LEN;
                uint8_t total[POE_SUMS_LEN];
                if (sums_add(total, s->node + POE_HASH_LEN, ps)) {
                    results[base + k] = POE_PROOF_SUM_OVERFLOW;
                    continue;
                }
                if ((s->fn & 1u) || s->fn == s->sn) {
                    /* r = Node(p, r) */
                    memcpy(msg, entry, POE_NODE_LEN);
                    memcpy(msg + POE_NODE_LEN, s->node, POE_NODE_LEN);
                    while ((s->fn & 1u) == 0 && s->fn != 0) {
                        s->fn >>= 1;
                        s->sn >>= 1;
                    }
                } else {
                    /* r = Node(r, p) */
                    memcpy(msg, s->node, POE_NODE_LEN);
                    memcpy(msg + POE_NODE_LEN, entry, POE_NODE_LEN);
                }
                s->fn >>= 1;
                s->sn >>= 1;
                s->pos++;
                memcpy(s->node + POE_HASH_LEN, total, POE_SUMS_LEN);
                live[nlive++] = k;
            }
            if (nlive == 0) break;
            g_hash_many(msgs, 2 * POE_NODE_LEN, nlive, NODE_FULL_BLOCKS, g_node_key,
                        B3_DERIVE_KEY_MATERIAL, outs, POE_HASH_LEN);
            for (size_t j = 0; j < nlive; j++) memcpy(st[live[j]].node, outs + j * POE_HASH_LEN, POE_HASH_LEN);
        }
        for (size_t k = 0; k < cnt; k++) {
            size_t i = base + k;
            if (results[i] != RESULT_PENDING) continue;
            size_t r = n_roots == 1 ? 0 : i;
            if (memcmp(st[k].node, root_hashes + r * POE_HASH_LEN, POE_HASH_LEN) != 0)
                results[i] = POE_PROOF_ROOT_HASH_MISMATCH;
            else if (memcmp(st[k].node + POE_HASH_LEN, root_sums + r * POE_SUMS_LEN, POE_SUMS_LEN) != 0)
                results[i] = POE_PROOF_ROOT_SUMS_MISMATCH;
            else
                results[i] = POE_PROOF_OK;
        }
    }
    free(st);
    free(msgs);
    free(outs);
    free(live);
    return POE_OK;
}

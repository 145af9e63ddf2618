/* Fixed-length hash-many, 16 lanes of AVX-512 (F + VL).
 *
 * Lane i of every vector belongs to input i of a group of 16. Message blocks are loaded as 16
 * rows of 64 bytes and transposed to 16 vectors of message words; the 32-byte final block is
 * transposed from 16 rows of 32 bytes, its missing 8 words being the constant zero; the eight
 * output words are transposed back to 16 rows of 32 bytes.
 *
 * Compiled with target attributes only, so the file builds without -mavx512f and the code runs
 * only after the dispatcher has checked the CPU.
 */
#include "poe_internal.h"

#if POE_HAVE_X86_SIMD

#include <immintrin.h>

#define TARGET __attribute__((target("avx512f,avx512vl")))
#define INLINE static inline __attribute__((always_inline)) TARGET

#define ADD(a, b) _mm512_add_epi32(a, b)
#define XOR(a, b) _mm512_xor_si512(a, b)
#define ROR(a, n) _mm512_ror_epi32(a, n)

/* The four G functions of a half-round, written step by step across the four so that the
 * independent chains sit next to each other. */
#define G4(a0, b0, c0, d0, a1, b1, c1, d1, a2, b2, c2, d2, a3, b3, c3, d3, x0, y0, x1, y1, x2, y2,  \
           x3, y3)                                                                                  \
    do {                                                                                            \
        a0 = ADD(ADD(a0, b0), x0);                                                                  \
        a1 = ADD(ADD(a1, b1), x1);                                                                  \
        a2 = ADD(ADD(a2, b2), x2);                                                                  \
        a3 = ADD(ADD(a3, b3), x3);                                                                  \
        d0 = ROR(XOR(d0, a0), 16);                                                                  \
        d1 = ROR(XOR(d1, a1), 16);                                                                  \
        d2 = ROR(XOR(d2, a2), 16);                                                                  \
        d3 = ROR(XOR(d3, a3), 16);                                                                  \
        c0 = ADD(c0, d0);                                                                           \
        c1 = ADD(c1, d1);                                                                           \
        c2 = ADD(c2, d2);                                                                           \
        c3 = ADD(c3, d3);                                                                           \
        b0 = ROR(XOR(b0, c0), 12);                                                                  \
        b1 = ROR(XOR(b1, c1), 12);                                                                  \
        b2 = ROR(XOR(b2, c2), 12);                                                                  \
        b3 = ROR(XOR(b3, c3), 12);                                                                  \
        a0 = ADD(ADD(a0, b0), y0);                                                                  \
        a1 = ADD(ADD(a1, b1), y1);                                                                  \
        a2 = ADD(ADD(a2, b2), y2);                                                                  \
        a3 = ADD(ADD(a3, b3), y3);                                                                  \
        d0 = ROR(XOR(d0, a0), 8);                                                                   \
        d1 = ROR(XOR(d1, a1), 8);                                                                   \
        d2 = ROR(XOR(d2, a2), 8);                                                                   \
        d3 = ROR(XOR(d3, a3), 8);                                                                   \
        c0 = ADD(c0, d0);                                                                           \
        c1 = ADD(c1, d1);                                                                           \
        c2 = ADD(c2, d2);                                                                           \
        c3 = ADD(c3, d3);                                                                           \
        b0 = ROR(XOR(b0, c0), 7);                                                                   \
        b1 = ROR(XOR(b1, c1), 7);                                                                   \
        b2 = ROR(XOR(b2, c2), 7);                                                                   \
        b3 = ROR(XOR(b3, c3), 7);                                                                   \
    } while (0)

#include "blake3_rounds.h"

/* One compression of 16 lanes, each with its own counter (low and high words in clo, chi). */
INLINE void compress16_ctr(__m512i h[8], const __m512i m[16], __m512i clo, __m512i chi, uint32_t block_len,
                          uint32_t flags) {
    __m512i v0 = h[0], v1 = h[1], v2 = h[2], v3 = h[3];
    __m512i v4 = h[4], v5 = h[5], v6 = h[6], v7 = h[7];
    __m512i v8 = _mm512_set1_epi32((int)poe_b3_iv[0]);
    __m512i v9 = _mm512_set1_epi32((int)poe_b3_iv[1]);
    __m512i v10 = _mm512_set1_epi32((int)poe_b3_iv[2]);
    __m512i v11 = _mm512_set1_epi32((int)poe_b3_iv[3]);
    __m512i v12 = clo;
    __m512i v13 = chi;
    __m512i v14 = _mm512_set1_epi32((int)block_len);
    __m512i v15 = _mm512_set1_epi32((int)flags);
    SEVEN_ROUNDS4(m);
    h[0] = XOR(v0, v8);
    h[1] = XOR(v1, v9);
    h[2] = XOR(v2, v10);
    h[3] = XOR(v3, v11);
    h[4] = XOR(v4, v12);
    h[5] = XOR(v5, v13);
    h[6] = XOR(v6, v14);
    h[7] = XOR(v7, v15);
}

/* Every lane at counter 0 (records: each is the first chunk of its own tree). */
INLINE void compress16(__m512i h[8], const __m512i m[16], uint32_t block_len, uint32_t flags) {
    compress16_ctr(h, m, _mm512_setzero_si512(), _mm512_setzero_si512(), block_len, flags);
}

/* Compress one block in all 16 lanes: h (8 chaining-value vectors) is updated in place.
 * Counter is 0 in every lane (each input is a single chunk); block_len and flags are common. */

/* 4x4 transpose of 32-bit words inside every 128-bit lane of four vectors. */
INLINE void transpose4_in_lanes(__m512i *a, __m512i *b, __m512i *c, __m512i *d) {
    __m512i t0 = _mm512_unpacklo_epi32(*a, *b);
    __m512i t1 = _mm512_unpackhi_epi32(*a, *b);
    __m512i t2 = _mm512_unpacklo_epi32(*c, *d);
    __m512i t3 = _mm512_unpackhi_epi32(*c, *d);
    *a = _mm512_unpacklo_epi64(t0, t2);
    *b = _mm512_unpackhi_epi64(t0, t2);
    *c = _mm512_unpacklo_epi64(t1, t3);
    *d = _mm512_unpackhi_epi64(t1, t3);
}

/* Message words of one 64-byte block of 16 rows: m[w] lane r = word w of row r. */
INLINE void load_block16(const uint8_t *const rows[16], size_t offset, __m512i m[16]) {
    __m512i r[16];
    for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_si512((const void *)(rows[i] + offset));
    /* After the in-lane 4x4 transposes, r[4g + c] lane L holds word 4L + c of rows 4g..4g+3. */
    for (int g = 0; g < 4; g++) transpose4_in_lanes(&r[4 * g], &r[4 * g + 1], &r[4 * g + 2], &r[4 * g + 3]);
    /* Then a 4x4 transpose of the 128-bit lanes across r[c], r[4 + c], r[8 + c], r[12 + c]. */
    for (int c = 0; c < 4; c++) {
        __m512i a = r[c], b = r[4 + c], cc = r[8 + c], d = r[12 + c];
        __m512i ab_lo = _mm512_shuffle_i32x4(a, b, 0x44);  /* a0 a1 b0 b1 */
        __m512i ab_hi = _mm512_shuffle_i32x4(a, b, 0xEE);  /* a2 a3 b2 b3 */
        __m512i cd_lo = _mm512_shuffle_i32x4(cc, d, 0x44); /* c0 c1 d0 d1 */
        __m512i cd_hi = _mm512_shuffle_i32x4(cc, d, 0xEE); /* c2 c3 d2 d3 */
        m[c] = _mm512_shuffle_i32x4(ab_lo, cd_lo, 0x88);      /* a0 b0 c0 d0 */
        m[4 + c] = _mm512_shuffle_i32x4(ab_lo, cd_lo, 0xDD);  /* a1 b1 c1 d1 */
        m[8 + c] = _mm512_shuffle_i32x4(ab_hi, cd_hi, 0x88);  /* a2 b2 c2 d2 */
        m[12 + c] = _mm512_shuffle_i32x4(ab_hi, cd_hi, 0xDD); /* a3 b3 c3 d3 */
    }
}

/* Eight words of 16 rows in eight vectors x[0..7], x[i] holding row i in its low half and row
 * i + 8 in its high half, <-> x[w] lane r = word w of row r. The same steps go both ways. */
INLINE void transpose_8x16(__m512i x[8]) {
    const __m512i lo = _mm512_set_epi64(13, 12, 5, 4, 9, 8, 1, 0);
    const __m512i hi = _mm512_set_epi64(15, 14, 7, 6, 11, 10, 3, 2);
    transpose4_in_lanes(&x[0], &x[1], &x[2], &x[3]);
    transpose4_in_lanes(&x[4], &x[5], &x[6], &x[7]);
    for (int c = 0; c < 4; c++) {
        __m512i a = x[c], b = x[4 + c];
        x[c] = _mm512_permutex2var_epi64(a, lo, b);
        x[4 + c] = _mm512_permutex2var_epi64(a, hi, b);
    }
}

INLINE void load_tail16(const uint8_t *const rows[16], size_t offset, __m512i m[16]) {
    for (int i = 0; i < 8; i++) {
        __m256i low = _mm256_loadu_si256((const void *)(rows[i] + offset));
        __m256i high = _mm256_loadu_si256((const void *)(rows[i + 8] + offset));
        m[i] = _mm512_inserti64x4(_mm512_castsi256_si512(low), high, 1);
    }
    transpose_8x16(m);
    for (int i = 8; i < 16; i++) m[i] = _mm512_setzero_si512();
}

INLINE void store_out16(__m512i h[8], uint8_t *const outs[16]) {
    transpose_8x16(h);
    for (int i = 0; i < 8; i++) {
        _mm256_storeu_si256((void *)outs[i], _mm512_castsi512_si256(h[i]));
        _mm256_storeu_si256((void *)outs[i + 8], _mm512_extracti64x4_epi64(h[i], 1));
    }
}

TARGET static void hash16(const uint8_t *const rows[16], size_t full_blocks, const uint32_t key[8],
                          uint32_t flags, uint8_t *const outs[16]) {
    __m512i h[8], m[16];
    for (int i = 0; i < 8; i++) h[i] = _mm512_set1_epi32((int)key[i]);
    for (size_t b = 0; b < full_blocks; b++) {
        load_block16(rows, b * B3_BLOCK_LEN, m);
        compress16(h, m, B3_BLOCK_LEN, flags | (b == 0 ? B3_CHUNK_START : 0u));
    }
    load_tail16(rows, full_blocks * B3_BLOCK_LEN, m);
    compress16(h, m, 32, flags | B3_CHUNK_END | B3_ROOT | (full_blocks == 0 ? B3_CHUNK_START : 0u));
    store_out16(h, outs);
}

#define PREFETCH_AHEAD 32 /* inputs ahead of the group being hashed */

TARGET void poe_hash_many_avx512(const uint8_t *in, size_t in_stride, size_t n, size_t full_blocks,
                                 const uint32_t key[8], uint32_t flags, uint8_t *out,
                                 size_t out_stride) {
    const uint8_t *rows[16];
    uint8_t *outs[16];
    uint8_t scratch[16][32];
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        if (i + PREFETCH_AHEAD + 16 <= n) {
            /* The next groups' bytes are one contiguous run when in_stride is the message
             * length; fetching them ahead keeps the 16 scattered row streams fed. */
            const uint8_t *next = in + (i + PREFETCH_AHEAD) * in_stride;
            size_t span = 16 * in_stride;
            for (size_t off = 0; off < span; off += 64) _mm_prefetch((const char *)(next + off), _MM_HINT_T0);
        }
        for (int j = 0; j < 16; j++) {
            rows[j] = in + (i + (size_t)j) * in_stride;
            outs[j] = out + (i + (size_t)j) * out_stride;
        }
        hash16(rows, full_blocks, key, flags, outs);
    }
    if (i < n) {
        /* A partial group: idle lanes re-read the last input and write to scratch. */
        size_t left = n - i;
        for (size_t j = 0; j < 16; j++) {
            size_t k = j < left ? i + j : n - 1;
            rows[j] = in + k * in_stride;
            outs[j] = j < left ? out + k * out_stride : scratch[j];
        }
        hash16(rows, full_blocks, key, flags, outs);
    }
}

/* ---------------------------------------------------------------- chaining values (memtree.c) */


/* 16 inputs of `blocks` full blocks each, lane j reading rows[j] and writing outs[j]. With
 * `next` (scattered inputs), block k of the next group's rows is prefetched while block k of
 * this group is hashed: the hardware prefetchers find contiguous inputs by themselves (measured:
 * software prefetch only slows those down) but not 1 KiB pieces scattered over the memory. */
INLINE void cv16_body(const uint8_t *const rows[16], const uint8_t *const *next, size_t blocks,
                      const uint32_t key[8], __m512i clo, __m512i chi, uint32_t flags,
                      uint32_t first, uint32_t last, uint8_t *const outs[16], int prefetch) {
    __m512i h[8], m[16];
    for (int i = 0; i < 8; i++) h[i] = _mm512_set1_epi32((int)key[i]);
    for (size_t k = 0; k < blocks; k++) {
        size_t off = k * B3_BLOCK_LEN;
        if (prefetch)
            for (int j = 0; j < 16; j++) _mm_prefetch((const char *)(next[j] + off), _MM_HINT_T0);
        load_block16(rows, off, m);
        uint32_t f = flags | (k == 0 ? first : 0u) | (k + 1 == blocks ? last : 0u);
        compress16_ctr(h, m, clo, chi, B3_BLOCK_LEN, f);
    }
    store_out16(h, outs);
}

/* Lane setup of the group of inputs i.. (a partial group's idle lanes re-read the last input
 * and write to scratch). */
INLINE void group16(const poe_cv_batch *b, size_t n, size_t i, const uint8_t *rows[16],
                    uint8_t *outs[16], uint8_t scratch[16][32], __m512i *clo, __m512i *chi) {
    uint32_t lo[16], hi[16];
    size_t left = n - i < 16 ? n - i : 16;
    for (size_t j = 0; j < 16; j++) {
        size_t k = j < left ? i + j : n - 1;
        if (rows != NULL) rows[j] = poe_cv_input(b, k);
        outs[j] = j < left ? poe_cv_output(b, k) : scratch[j];
        uint64_t c = poe_cv_counter(b, k);
        lo[j] = (uint32_t)c;
        hi[j] = (uint32_t)(c >> 32);
    }
    *clo = _mm512_loadu_si512((const void *)lo);
    *chi = _mm512_loadu_si512((const void *)hi);
}

TARGET void poe_cv_many_avx512(const poe_cv_batch *b, size_t n) {
    const uint8_t *rows[2][16];
    uint8_t *outs[16];
    uint8_t scratch[16][32];
    __m512i clo, chi;
    if (b->idx == NULL && b->ptrs == NULL) {
        for (size_t i = 0; i < n; i += 16) {
            group16(b, n, i, rows[0], outs, scratch, &clo, &chi);
            cv16_body(rows[0], NULL, b->blocks, b->key, clo, chi, b->flags, b->flags_first,
                      b->flags_last, outs, 0);
        }
        return;
    }
    /* Scattered inputs: the next group's rows are known one group ahead, for the prefetch. */
    int cur = 0;
    for (size_t j = 0; j < 16 && n > 0; j++) rows[0][j] = poe_cv_input(b, j < n ? j : n - 1);
    for (size_t i = 0; i < n; i += 16) {
        group16(b, n, i, NULL, outs, scratch, &clo, &chi);
        if (i + 16 < n) {
            for (size_t j = 0; j < 16; j++) rows[cur ^ 1][j] = poe_cv_input(b, i + 16 + j < n ? i + 16 + j : n - 1);
            cv16_body(rows[cur], rows[cur ^ 1], b->blocks, b->key, clo, chi, b->flags,
                      b->flags_first, b->flags_last, outs, 1);
        } else {
            cv16_body(rows[cur], NULL, b->blocks, b->key, clo, chi, b->flags, b->flags_first,
                      b->flags_last, outs, 0);
        }
        cur ^= 1;
    }
}

#else

typedef int poe_no_avx512_here; /* keeps the translation unit non-empty off x86-64 */

#endif

/*
 * step_sort: a long, stateful computation cut into steps.
 *
 * Sorts N = 1,048,576 pseudo-random uint32 values (xorshift32, fixed seed)
 * with a bottom-up merge sort, a bounded slice of work per call. All
 * progress lives in linear memory (the static arrays and the `st` struct),
 * so one instance can be driven across many metered segments:
 *
 *   while (step()) {}      -- each call is one segment
 *
 *   step()      does one slice and returns 1 while work remains, 0 once done
 *               (the call that finishes returns 0; later calls return 0 and
 *               do nothing).
 *   progress()  permille done, 0..1000; reads state only.
 *
 * Slices: 128 steps generate the input (8192 values each), 20 merge passes
 * of 128 steps each (8192 output elements per step), then one final step
 * checks order and the sum/xor of the values against those of the input,
 * computes an FNV-1a 64 checksum (one
 * xor/multiply round per 32-bit value) and prints one line to stdout:
 *
 *   sorted 1048576 values in 2689 steps; checksum 0x...; ok
 *
 * No floating point, no clocks, no randomness: deterministic by construction.
 * Built as a WASI reactor (see build.sh): the host must call the exported
 * `_initialize` once, right after instantiation, before the first `step`.
 */
#include <stdint.h>
#include <stdio.h>

#define LOG2N 20
#define N (1u << LOG2N)
#define SLICE 8192u
#define SEED 0x9e3779b9u

#define PHASE_GEN 0
#define PHASE_SORT 1
#define PHASE_VERIFY 2
#define PHASE_DONE 3

static uint32_t buf[2][N]; /* data + equally sized scratch: 8 MiB */

static struct {
    uint32_t phase;
    uint32_t steps;    /* step calls that did work */
    uint32_t rng;      /* xorshift32 state */
    uint32_t gen_pos;  /* values generated so far */
    uint32_t in_sum;   /* sum (mod 2^32) of the generated values */
    uint32_t in_xor;   /* xor of the generated values */
    uint32_t pass;     /* merge passes completed */
    uint32_t width;    /* run width of the current pass */
    uint32_t src;      /* buffer index holding the runs being merged */
    uint32_t k;        /* next output index in the current pass */
    uint32_t i, mid;   /* left run cursor and end */
    uint32_t j, hi;    /* right run cursor and end */
} st = {PHASE_GEN, 0, SEED, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0};

static void gen_slice(void) {
    uint32_t x = st.rng, sum = st.in_sum, xr = st.in_xor;
    uint32_t *a = buf[0];
    uint32_t end = st.gen_pos + SLICE;
    for (uint32_t p = st.gen_pos; p < end; p++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        a[p] = x;
        sum += x;
        xr ^= x;
    }
    st.rng = x;
    st.in_sum = sum;
    st.in_xor = xr;
    st.gen_pos = end;
    if (end == N) {
        st.phase = PHASE_SORT;
        st.pass = 0;
        st.width = 1;
        st.src = 0;
        st.k = 0;
        st.i = 0;
        st.mid = 1;
        st.j = 1;
        st.hi = 2;
    }
}

/* Merge SLICE output elements of the current pass; may cross run pairs
 * and finish the pass. N and every width are powers of two, so each pass
 * is exactly N / SLICE steps. */
static void merge_slice(void) {
    const uint32_t *s = buf[st.src];
    uint32_t *d = buf[st.src ^ 1];
    uint32_t i = st.i, mid = st.mid, j = st.j, hi = st.hi, k = st.k;
    uint32_t budget = SLICE;

    while (budget) {
        uint32_t stop = k + budget;
        if (stop > hi) stop = hi;
        budget -= stop - k;
        while (k < stop) {
            if (i < mid && (j >= hi || s[i] <= s[j]))
                d[k++] = s[i++];
            else
                d[k++] = s[j++];
        }
        if (k == hi) { /* pair done */
            if (k == N) { /* pass done */
                st.pass++;
                st.width <<= 1;
                st.src ^= 1;
                if (st.width >= N) {
                    st.phase = PHASE_VERIFY;
                    st.k = k;
                    return;
                }
                s = buf[st.src];
                d = buf[st.src ^ 1];
                k = 0;
            }
            i = k;
            mid = k + st.width;
            j = mid;
            hi = mid + st.width;
        }
    }
    st.i = i;
    st.mid = mid;
    st.j = j;
    st.hi = hi;
    st.k = k;
}

static void verify(void) {
    const uint32_t *a = buf[st.src];
    uint32_t sum = 0, xr = 0, bad = 0, prev = 0;
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a 64, one round per value */
    for (uint32_t p = 0; p < N; p++) {
        uint32_t v = a[p];
        bad |= v < prev;
        prev = v;
        sum += v;
        xr ^= v;
        h ^= v;
        h *= 0x100000001b3ull;
    }
    int ok = !bad && sum == st.in_sum && xr == st.in_xor;
    printf("sorted %u values in %u steps; checksum 0x%016llx; %s\n",
           (unsigned)N, (unsigned)st.steps, (unsigned long long)h,
           ok ? "ok" : "FAILED");
    fflush(stdout);
    st.phase = PHASE_DONE;
}

__attribute__((export_name("step"))) int32_t step(void) {
    switch (st.phase) {
    case PHASE_GEN:
        st.steps++;
        gen_slice();
        return 1;
    case PHASE_SORT:
        st.steps++;
        merge_slice();
        return 1;
    case PHASE_VERIFY:
        st.steps++;
        verify();
        return 0;
    default:
        return 0;
    }
}

/* Work units: N generated + LOG2N passes of N merged + 1 for verify. */
__attribute__((export_name("progress"))) int32_t progress(void) {
    uint64_t done;
    const uint64_t total = (uint64_t)N * (1 + LOG2N) + 1;
    switch (st.phase) {
    case PHASE_GEN:
        done = st.gen_pos;
        break;
    case PHASE_SORT:
        done = (uint64_t)N * (1 + st.pass) + st.k;
        break;
    case PHASE_VERIFY:
        done = total - 1;
        break;
    default:
        return 1000;
    }
    return (int32_t)(done * 1000 / total);
}

/* The BLAKE3 hash of a live linear memory, kept up to date incrementally, and the trackers that
 * tell which of its chunks were written (poe_native.h: poe_memtree_*, poe_dirty_*).
 *
 * The memory commitment is the standard BLAKE3 hash of the memory image. BLAKE3 cuts its input
 * into 1 KiB chunks (chunk counter = chunk index) and builds a binary tree over their chaining
 * values (CVs); pairing level by level and carrying an unpaired last node up unchanged gives the
 * same tree as BLAKE3's "left subtree = largest power of two of chunks strictly below n". The
 * tree keeps every level below the root: level 0 holds the n chunk CVs, level k + 1 holds
 * ceil(n_k / 2) nodes, up to the first level of exactly 2 nodes, whose parent compressed with
 * ROOT is the hash. (One chunk: the hash is that chunk hashed as a root; none: the empty hash.)
 *
 * An update rehashes the listed chunks and the new ones after growth, and recomputes only the
 * ancestors of nodes whose CV changed, level by level. A level's dirty set is a sorted list of
 * scattered indices below `tail` plus every index from `tail` on (growth, or a full build), so
 * both shapes are hashed in batches by the SIMD kernel without index lists for the tail.
 */
#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE 1
#endif

#include <errno.h>
#include <stdlib.h>

#include "poe_internal.h"
#include "poe_native.h"

#define MAX_LEVELS 40 /* 2^32 chunks need 33 levels */
#define CHUNK_BLOCKS (B3_CHUNK_LEN / B3_BLOCK_LEN)

/* ---------------------------------------------------------------- kernel choice */

/* The kernel matching the hash-many path merkle.c has chosen (poe_set_simd_path switches it). */
static poe_cv_many_fn cv_kernel(void) {
#if POE_HAVE_X86_SIMD
    const char *path = poe_simd_path();
    if (strcmp(path, "avx512") == 0) return poe_cv_many_avx512;
    if (strcmp(path, "avx2") == 0) return poe_cv_many_avx2;
#endif
    return poe_cv_many_portable;
}

/* Chaining values of chunks: chunk index(i) of mem, counter = its index. */
static void hash_chunks(poe_cv_many_fn kernel, const uint8_t *mem, const uint32_t *idx, size_t first,
                        size_t n, uint8_t *out, int out_by_index) {
    poe_cv_batch b;
    b.base = mem + first * B3_CHUNK_LEN;
    b.stride = B3_CHUNK_LEN;
    b.idx = idx;
    b.ptrs = NULL;
    b.blocks = CHUNK_BLOCKS;
    b.key = poe_b3_iv;
    b.counter = idx ? 0 : first;
    b.counter_by_index = 1;
    b.flags = 0;
    b.flags_first = B3_CHUNK_START;
    b.flags_last = B3_CHUNK_END;
    b.out = idx ? out : out + first * POE_HASH_LEN;
    b.out_by_index = out_by_index;
    kernel(&b, n);
}

/* Parents j (idx[i], or first + i when idx is NULL) of `level`, written to slot j of `up`. */
static void hash_parents(poe_cv_many_fn kernel, const uint8_t *level, const uint32_t *idx,
                         size_t first, size_t n, uint8_t *up) {
    poe_cv_batch b;
    b.base = idx ? level : level + first * 2 * POE_HASH_LEN;
    b.stride = 2 * POE_HASH_LEN;
    b.idx = idx;
    b.ptrs = NULL;
    b.blocks = 1;
    b.key = poe_b3_iv;
    b.counter = 0;
    b.counter_by_index = 0;
    b.flags = B3_PARENT;
    b.flags_first = 0;
    b.flags_last = 0;
    b.out = idx ? up : up + first * POE_HASH_LEN;
    b.out_by_index = 1;
    kernel(&b, n);
}

/* ---------------------------------------------------------------- the tree */

struct poe_memtree {
    size_t len;                 /* bytes covered */
    size_t nlevels;             /* levels stored */
    size_t count[MAX_LEVELS];   /* nodes per level */
    size_t cap[MAX_LEVELS];     /* allocated nodes per level */
    uint8_t *level[MAX_LEVELS]; /* count[k] * 32 bytes of CVs */
    uint8_t root[POE_HASH_LEN];
};

static void empty_root(uint8_t out[32]) { poe_b3_hash((const uint8_t *)"", 0, poe_b3_iv, 0, out, 32); }

poe_memtree *poe_memtree_new(void) {
    poe_memtree *t = (poe_memtree *)calloc(1, sizeof *t);
    if (t != NULL) empty_root(t->root);
    return t;
}

void poe_memtree_free(poe_memtree *t) {
    if (t == NULL) return;
    for (size_t k = 0; k < MAX_LEVELS; k++) free(t->level[k]);
    free(t);
}

size_t poe_memtree_length(const poe_memtree *t) { return t == NULL ? 0 : t->len; }

int poe_memtree_root(const poe_memtree *t, uint8_t *out) {
    if (t == NULL || out == NULL) return POE_ERR_ARGUMENT;
    memcpy(out, t->root, POE_HASH_LEN);
    return POE_OK;
}

/* Level sizes of a tree over n chunks; returns the number of levels stored. */
static size_t shape(size_t n, size_t count[MAX_LEVELS]) {
    if (n == 0) return 0;
    size_t k = 0;
    count[k++] = n;
    while (n > 2) {
        n = (n + 1) / 2;
        count[k++] = n;
    }
    return k;
}

static int reserve(poe_memtree *t, size_t k, size_t need) {
    if (need <= t->cap[k]) return POE_OK;
    size_t cap = t->cap[k] ? t->cap[k] : 16;
    while (cap < need) cap *= 2;
    uint8_t *p = (uint8_t *)realloc(t->level[k], cap * POE_HASH_LEN);
    if (p == NULL) return POE_ERR_NOMEM;
    t->level[k] = p;
    t->cap[k] = cap;
    return POE_OK;
}

static int all_zero(const uint8_t *p, size_t n) {
    uint64_t acc = 0;
    for (size_t i = 0; i < n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        acc |= w;
    }
    return acc == 0;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* The work of poe_memtree_update / _rehash / _rebuild. Chunks [0, rehash_below) are rehashed
 * and compared in addition to the listed ones; the tree is cleared first when `fresh`. */
static int update(poe_memtree *t, const uint8_t *mem, size_t len, const uint32_t *chunks, size_t n,
                  size_t rehash_below, int fresh, uint32_t *changed, size_t *n_changed) {
    if (t == NULL) return POE_ERR_ARGUMENT;
    if (n_changed) *n_changed = 0;
    if (len % B3_CHUNK_LEN) return POE_ERR_ARGUMENT;
    if (len / B3_CHUNK_LEN > (size_t)UINT32_MAX) return POE_ERR_ARGUMENT;
    if (len > 0 && mem == NULL) return POE_ERR_ARGUMENT;
    if (n > 0 && chunks == NULL) return POE_ERR_ARGUMENT;
    if (!fresh && len < t->len) return POE_ERR_ARGUMENT; /* memory never shrinks */
    size_t new_n = len / B3_CHUNK_LEN;
    for (size_t i = 0; i < n; i++)
        if (chunks[i] >= new_n) return POE_ERR_ARGUMENT;
    if (fresh) {
        t->len = 0;
        t->nlevels = 0;
        memset(t->count, 0, sizeof t->count);
        empty_root(t->root);
    }
    size_t old_n = t->len / B3_CHUNK_LEN;
    if (rehash_below > old_n) rehash_below = old_n;

    poe_cv_many_fn kernel = cv_kernel();
    size_t old_count[MAX_LEVELS], new_count[MAX_LEVELS];
    memcpy(old_count, t->count, sizeof old_count);
    memset(new_count, 0, sizeof new_count);
    size_t nlevels = shape(new_n, new_count);
    for (size_t k = 0; k < nlevels; k++)
        if (reserve(t, k, new_count[k]) != POE_OK) return POE_ERR_NOMEM;

    /* Level 0's scattered dirty set: the listed chunks below old_n (those above are rehashed as
     * growth anyway), sorted and without duplicates, merged with [0, rehash_below). */
    size_t m = 0;
    uint32_t *list = NULL, *cvs_idx = NULL;
    uint8_t *cvs = NULL;
    size_t scan_cap = n + rehash_below;
    if (scan_cap > 0) {
        list = (uint32_t *)malloc(scan_cap * sizeof *list);
        cvs_idx = (uint32_t *)malloc(scan_cap * sizeof *cvs_idx);
        cvs = (uint8_t *)malloc(scan_cap * POE_HASH_LEN);
        if (list == NULL || cvs_idx == NULL || cvs == NULL) {
            free(list);
            free(cvs_idx);
            free(cvs);
            return POE_ERR_NOMEM;
        }
        for (size_t i = 0; i < rehash_below; i++) list[m++] = (uint32_t)i;
        int sorted = 1;
        for (size_t i = 0; i < n; i++) {
            if (chunks[i] < rehash_below || chunks[i] >= old_n) continue;
            if (m > 0 && chunks[i] < list[m - 1]) sorted = 0;
            list[m++] = chunks[i];
        }
        if (!sorted) qsort(list, m, sizeof *list, cmp_u32);
        size_t u = 0;
        for (size_t i = 0; i < m; i++)
            if (u == 0 || list[i] != list[u - 1]) list[u++] = list[i];
        m = u;
    }

    /* Rehash them into a scratch buffer and keep those whose CV differs. */
    size_t nc = 0;
    if (m > 0) {
        if (rehash_below > 0 && m == rehash_below)
            hash_chunks(kernel, mem, NULL, 0, m, cvs, 0);
        else
            hash_chunks(kernel, mem, list, 0, m, cvs, 0);
        uint8_t *lv = t->level[0];
        for (size_t i = 0; i < m; i++) {
            uint8_t *slot = lv + (size_t)list[i] * POE_HASH_LEN;
            if (memcmp(slot, cvs + i * POE_HASH_LEN, POE_HASH_LEN) != 0) {
                memcpy(slot, cvs + i * POE_HASH_LEN, POE_HASH_LEN);
                list[nc++] = list[i];
            }
        }
    }
    /* Growth: the new chunks, hashed in place. */
    if (new_n > old_n) hash_chunks(kernel, mem, NULL, old_n, new_n - old_n, t->level[0], 1);

    if (changed != NULL) {
        if (nc > 0) memcpy(changed, list, nc * sizeof *list);
        size_t k = nc;
        for (size_t i = old_n; i < new_n; i++)
            if (!all_zero(mem + i * B3_CHUNK_LEN, B3_CHUNK_LEN)) changed[k++] = (uint32_t)i;
        if (n_changed) *n_changed = k;
    }

    /* Up the levels: list[0..nc) is the scattered part of level k's changed set, everything from
     * `tail` on is changed too. */
    size_t tail = old_n;
    for (size_t k = 0; k + 1 < nlevels; k++) {
        size_t cnt = new_count[k], up_old = old_count[k + 1], up_cnt = new_count[k + 1];
        size_t up_tail = tail < cnt ? tail / 2 : up_cnt;
        if (up_old < up_tail) up_tail = up_old;
        /* Scattered parents: the unique list[i] / 2 below up_tail, ascending. */
        size_t u = 0;
        for (size_t i = 0; i < nc; i++) {
            uint32_t p = list[i] / 2;
            if (p >= up_tail) break;
            if (u == 0 || cvs_idx[u - 1] != p) cvs_idx[u++] = p;
        }
        const uint8_t *lv = t->level[k];
        uint8_t *up = t->level[k + 1];
        /* Only the last parent can lack a right child (cnt odd): carried up unchanged. */
        size_t last = (cnt & 1u) ? cnt / 2 : (size_t)-1;
        size_t pairs = u;
        if (pairs > 0 && cvs_idx[pairs - 1] == last) {
            pairs--;
            memcpy(up + last * POE_HASH_LEN, lv + (cnt - 1) * POE_HASH_LEN, POE_HASH_LEN);
        }
        if (pairs > 0) hash_parents(kernel, lv, cvs_idx, 0, pairs, up);
        if (up_tail < up_cnt) {
            size_t tail_pairs = (last >= up_tail && last < up_cnt) ? up_cnt - 1 - up_tail : up_cnt - up_tail;
            if (tail_pairs > 0) hash_parents(kernel, lv, NULL, up_tail, tail_pairs, up);
            if (last >= up_tail && last < up_cnt)
                memcpy(up + last * POE_HASH_LEN, lv + (cnt - 1) * POE_HASH_LEN, POE_HASH_LEN);
        }
        uint32_t *swap = list;
        list = cvs_idx;
        cvs_idx = swap;
        nc = u;
        tail = up_tail;
    }

    memcpy(t->count, new_count, sizeof new_count);
    t->nlevels = nlevels;
    t->len = len;
    if (new_n == 0) {
        empty_root(t->root);
    } else if (new_n == 1) {
        poe_b3_hash(mem, B3_CHUNK_LEN, poe_b3_iv, 0, t->root, POE_HASH_LEN);
    } else {
        uint32_t words[16];
        poe_b3_compress(poe_b3_iv, t->level[nlevels - 1], B3_BLOCK_LEN, 0, B3_PARENT | B3_ROOT, words);
        for (int w = 0; w < 8; w++) poe_store32_le(t->root + 4 * w, words[w]);
    }
    free(list);
    free(cvs_idx);
    free(cvs);
    return POE_OK;
}

int poe_memtree_rebuild(poe_memtree *t, const uint8_t *mem, size_t len) {
    return update(t, mem, len, NULL, 0, 0, 1, NULL, NULL);
}

int poe_memtree_update(poe_memtree *t, const uint8_t *mem, size_t len, const uint32_t *chunks,
                       size_t n, uint32_t *changed, size_t *n_changed) {
    return update(t, mem, len, chunks, n, 0, 0, changed, n_changed);
}

int poe_memtree_rehash(poe_memtree *t, const uint8_t *mem, size_t len, uint32_t *changed,
                       size_t *n_changed) {
    return update(t, mem, len, NULL, 0, (size_t)-1, 0, changed, n_changed);
}

int poe_memory_root(const uint8_t *mem, size_t len, uint8_t *out) {
    if (out == NULL || len % B3_CHUNK_LEN) return POE_ERR_ARGUMENT;
    poe_memtree *t = poe_memtree_new();
    if (t == NULL) return POE_ERR_NOMEM;
    int rc = poe_memtree_rebuild(t, mem, len);
    if (rc == POE_OK) memcpy(out, t->root, POE_HASH_LEN);
    poe_memtree_free(t);
    return rc;
}

int poe_chunk_digests(const uint8_t *mem, const uint32_t *idx, size_t n, uint8_t *out) {
    if (n == 0) return POE_OK;
    if (mem == NULL || idx == NULL || out == NULL) return POE_ERR_ARGUMENT;
    poe_cv_batch b;
    b.base = mem;
    b.stride = B3_CHUNK_LEN;
    b.idx = idx;
    b.ptrs = NULL;
    b.blocks = CHUNK_BLOCKS;
    b.key = poe_b3_iv;
    b.counter = 0;
    b.counter_by_index = 0;
    b.flags = 0;
    b.flags_first = B3_CHUNK_START;
    b.flags_last = B3_CHUNK_END | B3_ROOT;
    b.out = out;
    b.out_by_index = 0;
    cv_kernel()(&b, n);
    return POE_OK;
}

/* ---------------------------------------------------------------- dirty tracking */

#ifdef __linux__
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

/* userfaultfd and PAGEMAP_SCAN (Linux >= 6.7), declared here: distribution headers may lack
 * them. Layouts from include/uapi/linux/userfaultfd.h and include/uapi/linux/fs.h. */
struct poe_uffdio_api { uint64_t api, features, ioctls; };
struct poe_uffdio_range { uint64_t start, len; };
struct poe_uffdio_register { struct poe_uffdio_range range; uint64_t mode, ioctls; };
struct poe_uffdio_writeprotect { struct poe_uffdio_range range; uint64_t mode; };
struct poe_page_region { uint64_t start, end, categories; };
struct poe_pm_scan_arg {
    uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages, category_inverted,
        category_mask, category_anyof_mask, return_mask;
};

#define POE_UFFD_API 0xAAu
#define POE_UFFDIO 0xAA
#define POE_UFFDIO_API _IOWR(POE_UFFDIO, 0x3F, struct poe_uffdio_api)
#define POE_UFFDIO_REGISTER _IOWR(POE_UFFDIO, 0x00, struct poe_uffdio_register)
#define POE_UFFDIO_WRITEPROTECT _IOWR(POE_UFFDIO, 0x06, struct poe_uffdio_writeprotect)
#define POE_UFFDIO_REGISTER_MODE_WP ((uint64_t)1 << 1)
#define POE_UFFDIO_WRITEPROTECT_MODE_WP ((uint64_t)1 << 0)
#define POE_UFFD_USER_MODE_ONLY 1
#define POE_UFFD_FEATURE_WP_UNPOPULATED ((uint64_t)1 << 13)
#define POE_UFFD_FEATURE_WP_ASYNC ((uint64_t)1 << 15)
#define POE_PAGE_IS_WRITTEN ((uint64_t)1 << 1)
#define POE_PM_SCAN_WP_MATCHING ((uint64_t)1 << 0)
#define POE_PM_SCAN_CHECK_WPASYNC ((uint64_t)1 << 1)
#define POE_PAGEMAP_SCAN _IOWR('f', 16, struct poe_pm_scan_arg)
#define SCAN_REGIONS 256
#endif

struct poe_dirty {
    int kind;
    uint8_t *mem;
    size_t len;
    size_t page;
    int uffd, pagemap;
    uint8_t *shadow;
    int os_error;
};

#ifdef __linux__
static int sys_fail(poe_dirty *d) {
    d->os_error = errno;
    return POE_ERR_SYSTEM;
}

/* Register [mem + from, mem + to) for write-protect tracking and protect it. */
static int uffd_arm(poe_dirty *d, size_t from, size_t to) {
    if (to <= from) return POE_OK;
    struct poe_uffdio_register reg;
    memset(&reg, 0, sizeof reg);
    reg.range.start = (uint64_t)(uintptr_t)(d->mem + from);
    reg.range.len = to - from;
    reg.mode = POE_UFFDIO_REGISTER_MODE_WP;
    if (ioctl(d->uffd, POE_UFFDIO_REGISTER, &reg) != 0) return sys_fail(d);
    struct poe_uffdio_writeprotect wp;
    memset(&wp, 0, sizeof wp);
    wp.range = reg.range;
    wp.mode = POE_UFFDIO_WRITEPROTECT_MODE_WP;
    if (ioctl(d->uffd, POE_UFFDIO_WRITEPROTECT, &wp) != 0) return sys_fail(d);
    return POE_OK;
}

/* Written pages of [mem, mem + len) since the last scan, re-protected as they are reported;
 * their chunks go to out (NULL: only re-protect). */
static int uffd_scan(poe_dirty *d, uint32_t *out, size_t *n) {
    struct poe_page_region regions[SCAN_REGIONS];
    struct poe_pm_scan_arg a;
    size_t k = 0;
    uint64_t start = (uint64_t)(uintptr_t)d->mem, end = start + d->len;
    while (start < end) {
        memset(&a, 0, sizeof a);
        a.size = sizeof a;
        a.flags = POE_PM_SCAN_WP_MATCHING | POE_PM_SCAN_CHECK_WPASYNC;
        a.start = start;
        a.end = end;
        a.vec = (uint64_t)(uintptr_t)regions;
        a.vec_len = SCAN_REGIONS;
        a.category_mask = POE_PAGE_IS_WRITTEN;
        a.return_mask = POE_PAGE_IS_WRITTEN;
        long r = ioctl(d->pagemap, POE_PAGEMAP_SCAN, &a);
        if (r < 0) {
            if (errno == EINTR) continue;
            return sys_fail(d);
        }
        for (long i = 0; i < r; i++) {
            size_t c0 = (size_t)(regions[i].start - (uint64_t)(uintptr_t)d->mem) / B3_CHUNK_LEN;
            size_t c1 = (size_t)(regions[i].end - (uint64_t)(uintptr_t)d->mem) / B3_CHUNK_LEN;
            if (out != NULL)
                for (size_t c = c0; c < c1; c++) out[k++] = (uint32_t)c;
        }
        if (a.walk_end <= start) break; /* no progress: nothing left to walk */
        start = a.walk_end;
    }
    if (n) *n = k;
    return POE_OK;
}

static int uffd_open(poe_dirty *d) {
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0 || page % B3_CHUNK_LEN) return POE_ERR_UNSUPPORTED;
    d->page = (size_t)page;
    if ((uintptr_t)d->mem % d->page || d->len % d->page) return POE_ERR_UNSUPPORTED;
#ifdef SYS_userfaultfd
    d->uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | POE_UFFD_USER_MODE_ONLY);
    if (d->uffd < 0 && errno == EINVAL) /* kernels before 5.11 know no user-mode-only flag */
        d->uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
#else
    errno = ENOSYS;
#endif
    if (d->uffd < 0) {
        d->os_error = errno;
        return POE_ERR_UNSUPPORTED;
    }
    struct poe_uffdio_api api;
    memset(&api, 0, sizeof api);
    api.api = POE_UFFD_API;
    api.features = POE_UFFD_FEATURE_WP_ASYNC | POE_UFFD_FEATURE_WP_UNPOPULATED;
    if (ioctl(d->uffd, POE_UFFDIO_API, &api) != 0) {
        d->os_error = errno;
        return POE_ERR_UNSUPPORTED;
    }
    d->pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (d->pagemap < 0) {
        d->os_error = errno;
        return POE_ERR_UNSUPPORTED;
    }
    int rc = uffd_arm(d, 0, d->len);
    if (rc != POE_OK) return POE_ERR_UNSUPPORTED; /* e.g. not anonymous or shmem memory */
    /* A first scan proves PAGEMAP_SCAN works on this range (and reports nothing yet). */
    if (uffd_scan(d, NULL, NULL) != POE_OK) return POE_ERR_UNSUPPORTED;
    return POE_OK;
}
#endif

int poe_dirty_open(int kind, uint8_t *mem, size_t len, poe_dirty **out, int *os_error) {
    if (os_error) *os_error = 0;
    if (out == NULL) return POE_ERR_ARGUMENT;
    *out = NULL;
    if (len % B3_CHUNK_LEN || (len > 0 && mem == NULL)) return POE_ERR_ARGUMENT;
    if (len / B3_CHUNK_LEN > (size_t)UINT32_MAX) return POE_ERR_ARGUMENT;
    if (kind != POE_DIRTY_COMPARE && kind != POE_DIRTY_UFFD) return POE_ERR_ARGUMENT;
    poe_dirty *d = (poe_dirty *)calloc(1, sizeof *d);
    if (d == NULL) return POE_ERR_NOMEM;
    d->kind = kind;
    d->mem = mem;
    d->len = len;
    d->uffd = -1;
    d->pagemap = -1;
    int rc = POE_OK;
    if (kind == POE_DIRTY_COMPARE) {
        if (len > 0) {
            d->shadow = (uint8_t *)malloc(len);
            if (d->shadow == NULL) rc = POE_ERR_NOMEM;
            else memcpy(d->shadow, mem, len);
        }
    } else {
#ifdef __linux__
        rc = uffd_open(d);
#else
        rc = POE_ERR_UNSUPPORTED;
#endif
    }
    if (rc != POE_OK) {
        if (os_error) *os_error = d->os_error;
        poe_dirty_close(d);
        return rc;
    }
    *out = d;
    return POE_OK;
}

int poe_dirty_os_error(const poe_dirty *d) { return d == NULL ? 0 : d->os_error; }

int poe_dirty_extend(poe_dirty *d, size_t new_len) {
    if (d == NULL || new_len < d->len || new_len % B3_CHUNK_LEN) return POE_ERR_ARGUMENT;
    if (new_len / B3_CHUNK_LEN > (size_t)UINT32_MAX) return POE_ERR_ARGUMENT;
    if (new_len == d->len) return POE_OK;
    if (d->mem == NULL) return POE_ERR_ARGUMENT; /* opened over no memory: reopen instead */
    if (d->kind == POE_DIRTY_COMPARE) {
        uint8_t *s = (uint8_t *)realloc(d->shadow, new_len);
        if (s == NULL) return POE_ERR_NOMEM;
        memcpy(s + d->len, d->mem + d->len, new_len - d->len);
        d->shadow = s;
        d->len = new_len;
        return POE_OK;
    }
#ifdef __linux__
    if (new_len % d->page) return POE_ERR_UNSUPPORTED; /* only whole pages can be protected */
    int rc = uffd_arm(d, d->len, new_len);
    if (rc != POE_OK) return rc;
    d->len = new_len;
    return POE_OK;
#else
    return POE_ERR_UNSUPPORTED;
#endif
}

int poe_dirty_scan(poe_dirty *d, uint32_t *chunks, size_t cap, size_t *n) {
    if (d == NULL || n == NULL) return POE_ERR_ARGUMENT;
    *n = 0;
    size_t total = d->len / B3_CHUNK_LEN;
    if (cap < total || (total > 0 && chunks == NULL)) return POE_ERR_ARGUMENT;
    if (d->kind == POE_DIRTY_COMPARE) {
        size_t k = 0;
        for (size_t c = 0; c < total; c++) {
            const uint8_t *live = d->mem + c * B3_CHUNK_LEN;
            uint8_t *old = d->shadow + c * B3_CHUNK_LEN;
            if (memcmp(live, old, B3_CHUNK_LEN) != 0) {
                memcpy(old, live, B3_CHUNK_LEN);
                chunks[k++] = (uint32_t)c;
            }
        }
        *n = k;
        return POE_OK;
    }
#ifdef __linux__
    if (d->uffd < 0) return POE_ERR_ARGUMENT;
    return uffd_scan(d, chunks, n);
#else
    return POE_ERR_UNSUPPORTED;
#endif
}

void poe_dirty_close(poe_dirty *d) {
    if (d == NULL) return;
#ifdef __linux__
    if (d->pagemap >= 0) close(d->pagemap);
    if (d->uffd >= 0) close(d->uffd); /* unregisters the range and drops the protection */
#endif
    free(d->shadow);
    free(d);
}

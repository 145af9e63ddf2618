/* Public C interface of poe's native Merkle sum tree kernel.
 *
 * This header is also the cffi cdef (native/build.py strips the preprocessor lines), so it holds
 * only declarations cffi can parse: no macros with arguments, no inline code.
 *
 * Byte layouts (docs/spec.md §10):
 *   record  288 bytes (spec §2)
 *   hash    32 bytes
 *   sums    48 bytes: fuel, mem, io as three unsigned 128-bit little-endian integers
 *
 * Every function takes explicit element counts and never reads or writes outside
 * [ptr, ptr + count * element size). Pointers may be NULL only when the matching count is 0.
 */
#ifndef POE_NATIVE_H
#define POE_NATIVE_H

#include <stddef.h>
#include <stdint.h>

/* Status codes returned by the functions below. */
#define POE_OK 0
#define POE_ERR_OVERFLOW 1
#define POE_ERR_ARGUMENT 2
#define POE_ERR_NOMEM 3
#define POE_ERR_UNSUPPORTED 4
#define POE_ERR_SYSTEM 5

/* Per-proof result codes of poe_verify_inclusion_many. */
#define POE_PROOF_OK 0
#define POE_PROOF_BAD_INDEX 1
#define POE_PROOF_BAD_PATH_LENGTH 2
#define POE_PROOF_ROOT_HASH_MISMATCH 3
#define POE_PROOF_ROOT_SUMS_MISMATCH 4
#define POE_PROOF_SUM_OVERFLOW 5
#define POE_PROOF_BAD_ARGUMENT 6

/* BLAKE3 modes for poe_blake3. */
#define POE_MODE_HASH 0
#define POE_MODE_KEYED 1
#define POE_MODE_DERIVE_KEY 2

/* Version of this interface; poe/_native.py refuses a library reporting another one. */
int poe_abi_version(void);

/* Name of the hash-many path in use: "scalar", "avx2" or "avx512". */
const char *poe_simd_path(void);

/* Whether a path can run here: 1 yes, 0 no (not compiled in or the CPU lacks it). */
int poe_simd_supported(const char *name);

/* Switch paths (test hook; not thread-safe against concurrent hashing). name is "scalar",
 * "avx2", "avx512" or "auto". Returns POE_OK, or POE_ERR_ARGUMENT for an unknown or
 * unsupported name (the path in use is then unchanged). */
int poe_set_simd_path(const char *name);

/* BLAKE3 of data[0..len) in the given mode, writing out_len bytes of (extended) output.
 * key: 32 bytes for POE_MODE_KEYED, else ignored. context/context_len: the context string
 * for POE_MODE_DERIVE_KEY, else ignored. Returns POE_OK or POE_ERR_ARGUMENT (unknown mode). */
int poe_blake3(const uint8_t *data, size_t len, int mode, const uint8_t *key,
               const uint8_t *context, size_t context_len, uint8_t *out, size_t out_len);

/* n records (n * 288 bytes) -> n leaf hashes (n * 32) and n leaf sums (n * 48). */
int poe_leaf_hashes(const uint8_t *records, size_t n, uint8_t *hashes, uint8_t *sums);

/* One level up: n nodes (hashes n * 32, sums n * 48) -> (n + 1) / 2 parents, an unpaired last
 * node carried up unchanged. Returns POE_OK or POE_ERR_OVERFLOW (outputs then unspecified).
 * The outputs must not overlap the inputs. */
int poe_parent_level(const uint8_t *hashes, const uint8_t *sums, size_t n, uint8_t *out_hashes,
                     uint8_t *out_sums);

/* Root of the tree over n records: hash (32) and sums (48). n = 0 gives the empty-tree hash
 * and zero sums. Returns POE_OK, POE_ERR_OVERFLOW or POE_ERR_NOMEM. */
int poe_merkle_root(const uint8_t *records, size_t n, uint8_t *hash, uint8_t *sums);

/* Verify m inclusion proofs (spec §10, RFC 9162 §2.1.3.2 carrying sums).
 *   leaf_hashes m * 32, leaf_sums m * 48      the leaves (as poe_leaf_hashes gives them)
 *   indices, sizes                            m each: leaf index and tree size
 *   path_offsets                              m + 1 entries: proof i's path is entries
 *                                             [path_offsets[i], path_offsets[i + 1])
 *   path n_entries * 80                       siblings, from the leaf upward, each hash ‖ sums
 *                                             (the entry form of the binary proof, spec §10)
 *   root_hashes n_roots * 32, root_sums n_roots * 48        n_roots is 1 (one root for all)
 *                                                           or m (one root per proof)
 *   results                                   m codes, POE_PROOF_*
 * A proof whose offsets are decreasing or beyond n_entries gets POE_PROOF_BAD_ARGUMENT.
 * Returns POE_OK, POE_ERR_ARGUMENT (n_roots neither 1 nor m) or POE_ERR_NOMEM. */
int poe_verify_inclusion_many(size_t m, const uint8_t *leaf_hashes, const uint8_t *leaf_sums,
                              const uint64_t *indices, const uint64_t *sizes,
                              const uint64_t *path_offsets, const uint8_t *path,
                              size_t n_entries,
                              const uint8_t *root_hashes, const uint8_t *root_sums,
                              size_t n_roots, int32_t *results);

/* ---------------------------------------------------------------- memory commitment (memtree.c)
 *
 * The commitment to a linear memory image of len bytes (len a multiple of 1024, possibly 0) is
 * its standard BLAKE3 hash (plain mode, 32 bytes): what any BLAKE3 library computes for the
 * image. A poe_memtree keeps every level of BLAKE3's chaining-value tree below the root for the
 * memory it last saw, so that after a segment only the listed chunks (1 KiB, chunk i = bytes
 * [1024 i, 1024 i + 1024)) are rehashed and only the ancestors of changed ones recomputed.
 * Chunk indices are uint32_t, so len / 1024 must fit in 32 bits. Not thread-safe: one tree,
 * one thread at a time. Hashing uses the SIMD path of poe_simd_path(). */

#define POE_DIRTY_UFFD 1
#define POE_DIRTY_COMPARE 2

typedef struct poe_memtree poe_memtree;

/* A tree over the empty memory (len 0); NULL when out of memory. */
poe_memtree *poe_memtree_new(void);
void poe_memtree_free(poe_memtree *t);

/* Forget everything and hash mem[0..len) from scratch. len need not be >= the previous one.
 * Returns POE_OK, POE_ERR_ARGUMENT (len not a multiple of 1024, or too large; mem NULL with
 * len > 0) or POE_ERR_NOMEM (the tree is then empty or unchanged, its root still consistent). */
int poe_memtree_rebuild(poe_memtree *t, const uint8_t *mem, size_t len);

/* After the memory changed: mem[0..len) is the memory now, len >= the tree's length (memory
 * only grows; smaller is POE_ERR_ARGUMENT and nothing changes). chunks[0..n) lists the chunks
 * that may have changed since the last rebuild/update (any order, duplicates allowed, clean ones
 * allowed; each < len / 1024 or POE_ERR_ARGUMENT). Chunks not listed below the old length are
 * trusted to be unchanged. Every chunk at or above the old length (growth) is hashed.
 *
 * changed (may be NULL; else room for len / 1024 entries) receives, ascending, n_changed chunk
 * indices: (a) every chunk below the old length whose chaining value differs from before, i.e.
 * whose bytes changed (not merely listed, not merely written with the same bytes), then (b)
 * every chunk at or above the old length whose bytes are not all zero. A grown chunk of zeros
 * is not reported: the image after growth is the old image with changed chunks replaced, then
 * zero bytes, then the reported grown chunks. Returns POE_OK, POE_ERR_ARGUMENT, POE_ERR_NOMEM. */
int poe_memtree_update(poe_memtree *t, const uint8_t *mem, size_t len, const uint32_t *chunks,
                       size_t n, uint32_t *changed, size_t *n_changed);

/* poe_memtree_update with every chunk listed (no tracking available: e.g. the memory moved). */
int poe_memtree_rehash(poe_memtree *t, const uint8_t *mem, size_t len, uint32_t *changed,
                       size_t *n_changed);

/* The BLAKE3 hash of the memory the tree last saw (32 bytes to out). */
int poe_memtree_root(const poe_memtree *t, uint8_t *out);

/* The length in bytes the tree covers. */
size_t poe_memtree_length(const poe_memtree *t);

/* Standard BLAKE3 of mem[0..len), len a multiple of 1024 (SIMD chunk tree, one thread). */
int poe_memory_root(const uint8_t *mem, size_t len, uint8_t *out);

/* Plain BLAKE3 hash (each chunk a whole message) of the 1 KiB chunks idx[0..n) of mem:
 * n * 32 bytes to out. The caller guarantees every chunk lies inside the memory. */
int poe_chunk_digests(const uint8_t *mem, const uint32_t *idx, size_t n, uint8_t *out);

/* ---------------------------------------------------------------- dirty tracking
 *
 * A tracker watches mem[0..len) and reports the chunks written since it was opened or last
 * scanned. Kinds:
 *   POE_DIRTY_UFFD     Linux >= 6.7: userfaultfd write-protection in async mode plus the
 *                      PAGEMAP_SCAN ioctl; the kernel marks written pages, a scan reports and
 *                      re-protects them atomically. Granularity: a page (sysconf; 4 KiB = 4
 *                      chunks), so reported chunks may be unchanged. mem and len must be page
 *                      aligned and the memory anonymous or shmem/memfd backed.
 *   POE_DIRTY_COMPARE  a shadow copy; a scan compares chunk by chunk and reports (and copies)
 *                      exactly the chunks whose bytes differ.
 * Growth: after the memory grew in place, scan first (covers the old length), then extend to the
 * new length; what happened in the grown part before the extend is the caller's growth business
 * (poe_memtree_update hashes every grown chunk). A memory that moved needs a new tracker. */

typedef struct poe_dirty poe_dirty;

/* Start tracking. POE_OK and *out set; else *out is NULL and the status says why:
 * POE_ERR_UNSUPPORTED (this kind cannot work here: not Linux, old kernel, userfaultfd denied,
 * unaligned or unsuitable memory; *os_error, if not NULL, gets errno when there was one),
 * POE_ERR_ARGUMENT or POE_ERR_NOMEM. */
int poe_dirty_open(int kind, uint8_t *mem, size_t len, poe_dirty **out, int *os_error);

/* The memory grew in place to new_len (>= the tracked length): track the new part too.
 * POE_OK, POE_ERR_ARGUMENT, POE_ERR_NOMEM, POE_ERR_UNSUPPORTED (uffd: new_len not a whole
 * number of pages) or POE_ERR_SYSTEM (poe_dirty_os_error says why). The tracker is unchanged
 * by a failure. */
int poe_dirty_extend(poe_dirty *d, size_t new_len);

/* Chunks written since the last scan (since open for the first), ascending, no duplicates, to
 * chunks[0..*n). cap must be >= the tracked length / 1024 (the most a scan can report), else
 * POE_ERR_ARGUMENT. POE_ERR_SYSTEM if the kernel refused (poe_dirty_os_error). */
int poe_dirty_scan(poe_dirty *d, uint32_t *chunks, size_t cap, size_t *n);

/* errno of the last POE_ERR_SYSTEM. */
int poe_dirty_os_error(const poe_dirty *d);

/* Stop tracking (drops the write protection) and free. NULL is fine. */
void poe_dirty_close(poe_dirty *d);

#endif

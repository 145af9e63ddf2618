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

#endif

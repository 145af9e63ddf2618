/* The BLAKE3 round schedule for the vector kernels, shared by blake3_avx2.c and
 * blake3_avx512.c. Include it after defining G4(a0, b0, c0, d0, ..., a3, b3, c3, d3,
 * mx0, my0, ..., mx3, my3): four G functions over one column or diagonal step, on whatever
 * vector type the file uses. The message word order of each round is the BLAKE3 permutation
 * applied round after round (BLAKE3 specification, section 2.2). */
#ifndef POE_BLAKE3_ROUNDS_H
#define POE_BLAKE3_ROUNDS_H

#define ROUND4(M, s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11, s12, s13, s14, s15)            \
    G4(v0, v4, v8, v12, v1, v5, v9, v13, v2, v6, v10, v14, v3, v7, v11, v15, M[s0], M[s1], M[s2],  \
       M[s3], M[s4], M[s5], M[s6], M[s7]);                                                         \
    G4(v0, v5, v10, v15, v1, v6, v11, v12, v2, v7, v8, v13, v3, v4, v9, v14, M[s8], M[s9], M[s10], \
       M[s11], M[s12], M[s13], M[s14], M[s15])

#define SEVEN_ROUNDS4(M)                                                   \
    do {                                                                   \
        ROUND4(M, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);   \
        ROUND4(M, 2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8);   \
        ROUND4(M, 3, 4, 10, 12, 13, 2, 7, 14, 6, 5, 9, 0, 11, 15, 8, 1);   \
        ROUND4(M, 10, 7, 12, 9, 14, 3, 13, 15, 4, 0, 11, 2, 5, 8, 1, 6);   \
        ROUND4(M, 12, 13, 9, 11, 15, 10, 14, 8, 7, 2, 5, 3, 0, 1, 6, 4);   \
        ROUND4(M, 9, 14, 11, 5, 8, 12, 15, 1, 13, 3, 0, 10, 2, 6, 4, 7);   \
        ROUND4(M, 11, 15, 5, 0, 1, 9, 8, 6, 14, 10, 2, 12, 3, 4, 7, 13);   \
    } while (0)

#endif

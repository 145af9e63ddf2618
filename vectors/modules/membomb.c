/*
 * membomb (hostile, C): allocate 1 MiB blocks forever, touching one byte in
 * every 4 KiB page so the memory is really used, until malloc() returns
 * NULL. Then report the number of blocks on stderr and abort() (which is a
 * wasm `unreachable` trap under wasi-libc).
 */
#include <stdio.h>
#include <stdlib.h>

#define BLOCK (1024 * 1024)
#define PAGE 4096

int main(void) {
    unsigned long blocks = 0;
    for (;;) {
        volatile unsigned char *p = malloc(BLOCK);
        if (!p) break;
        for (size_t off = 0; off < BLOCK; off += PAGE) p[off] = (unsigned char)(off >> 12);
        blocks++;
    }
    fprintf(stderr, "membomb: malloc failed after %lu MiB\n", blocks);
    abort();
}

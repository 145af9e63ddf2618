/*
 * bigout (hostile): write an endless stream of 80-byte lines to stdout.
 * Never stops on its own: it ignores write errors and keeps going, so only
 * an output limit or the fuel budget ends it.
 */
#include <stdio.h>

int main(void) {
    unsigned long long n = 0;
    for (;;) {
        /* "line " + 20 digits + " " + 53 filler chars + "\n" = 80 bytes */
        printf("line %020llu %s\n", n++,
               ".....................................................");
    }
}

/*
 * entropy_clock: exercise the nondeterministic-looking WASI surfaces so a
 * deterministic host can show they are in fact reproducible.
 *
 *  - 32 bytes from getentropy()            -> random_get
 *  - CLOCK_REALTIME and CLOCK_MONOTONIC    -> clock_time_get
 *    (each read twice, with some arithmetic work in between)
 *  - the GREETING environment variable     -> environ_get
 *  - argc / argv                           -> args_get
 *
 * Everything is printed to stdout. Exit status 0, or 1 if getentropy or
 * clock_gettime fails.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static uint64_t busy_work(uint64_t seed, unsigned rounds) {
    uint64_t x = seed | 1;
    for (unsigned i = 0; i < rounds; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x *= 0x9E3779B97F4A7C15ULL;
    }
    return x;
}

static long long ns_of(const struct timespec *ts) {
    return (long long)ts->tv_sec * 1000000000LL + ts->tv_nsec;
}

int main(int argc, char **argv) {
    unsigned char buf[32];
    if (getentropy(buf, sizeof buf) != 0) {
        perror("getentropy");
        return 1;
    }
    printf("random: ");
    for (size_t i = 0; i < sizeof buf; i++) printf("%02x", buf[i]);
    printf("\n");

    struct timespec rt1, mono1, rt2, mono2;
    if (clock_gettime(CLOCK_REALTIME, &rt1) != 0 ||
        clock_gettime(CLOCK_MONOTONIC, &mono1) != 0) {
        perror("clock_gettime");
        return 1;
    }
    uint64_t acc = busy_work(buf[0] | ((uint64_t)buf[1] << 8), 200000);
    if (clock_gettime(CLOCK_REALTIME, &rt2) != 0 ||
        clock_gettime(CLOCK_MONOTONIC, &mono2) != 0) {
        perror("clock_gettime");
        return 1;
    }
    printf("work: %016llx\n", (unsigned long long)acc);
    printf("realtime1: %lld.%09ld\n", (long long)rt1.tv_sec, rt1.tv_nsec);
    printf("realtime2: %lld.%09ld\n", (long long)rt2.tv_sec, rt2.tv_nsec);
    printf("monotonic1: %lld\n", ns_of(&mono1));
    printf("monotonic2: %lld\n", ns_of(&mono2));
    printf("monotonic_delta_ns: %lld\n", ns_of(&mono2) - ns_of(&mono1));

    const char *greeting = getenv("GREETING");
    if (greeting)
        printf("GREETING: %s\n", greeting);
    else
        printf("GREETING: (unset)\n");

    printf("argc: %d\n", argc);
    for (int i = 0; i < argc; i++) printf("argv[%d]: %s\n", i, argv[i]);
    return 0;
}

/*
 * exit_code: print one line, then exit with the status given as argv[1]
 * (parsed with atoi; default 3). exit() flushes stdio first, so the line
 * is always delivered; under WASI the status reaches the host via
 * proc_exit.
 */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    int code = argc > 1 ? atoi(argv[1]) : 3;
    printf("exit_code: exiting with status %d\n", code);
    exit(code);
}

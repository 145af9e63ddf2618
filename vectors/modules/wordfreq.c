/*
 * wordfreq: count lines, words and bytes of a text file and report the ten
 * most frequent words.
 *
 * Usage: wordfreq [FILE]      (FILE defaults to "input.txt")
 * The file is opened with fopen() relative to the current directory, which
 * under WASI means the preopened directory ".".
 *
 * Definitions:
 *   bytes  - size of the file in bytes.
 *   lines  - number of '\n' characters, plus one if the file is non-empty
 *            and does not end in '\n'.
 *   words  - maximal runs of ASCII letters/digits; an apostrophe is kept
 *            when it sits between two letters/digits ("don't" is one word).
 *            Words are lower-cased before counting.
 * Top-10 ordering: count descending, ties broken by word ascending (bytewise).
 *
 * Exit status: 0 on success, 2 if the file cannot be opened, 1 on a read or
 * allocation failure.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOP_N 10
#define MAX_WORD 64 /* longer words are truncated to this many bytes */

struct entry {
    char *word; /* NULL = empty slot */
    unsigned long count;
};

static struct entry *table;
static size_t table_cap;
static size_t table_len;

static unsigned long hash_word(const char *s, size_t n) {
    /* FNV-1a, 32-bit */
    unsigned long h = 2166136261UL;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h = (h * 16777619UL) & 0xffffffffUL;
    }
    return h;
}

static int table_grow(void) {
    size_t new_cap = table_cap ? table_cap * 2 : 256;
    struct entry *fresh = calloc(new_cap, sizeof *fresh);
    if (!fresh) return -1;
    for (size_t i = 0; i < table_cap; i++) {
        if (!table[i].word) continue;
        size_t j = hash_word(table[i].word, strlen(table[i].word)) & (new_cap - 1);
        while (fresh[j].word) j = (j + 1) & (new_cap - 1);
        fresh[j] = table[i];
    }
    free(table);
    table = fresh;
    table_cap = new_cap;
    return 0;
}

static int count_word(const char *w, size_t n) {
    if ((table_len + 1) * 4 > table_cap * 3 && table_grow() != 0) return -1;
    size_t j = hash_word(w, n) & (table_cap - 1);
    while (table[j].word) {
        if (strlen(table[j].word) == n && memcmp(table[j].word, w, n) == 0) {
            table[j].count++;
            return 0;
        }
        j = (j + 1) & (table_cap - 1);
    }
    char *copy = malloc(n + 1);
    if (!copy) return -1;
    memcpy(copy, w, n);
    copy[n] = '\0';
    table[j].word = copy;
    table[j].count = 1;
    table_len++;
    return 0;
}

static int is_word_char(int c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static int cmp_entries(const void *a, const void *b) {
    const struct entry *x = a, *y = b;
    if (x->count != y->count) return x->count > y->count ? -1 : 1;
    return strcmp(x->word, y->word);
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "input.txt";
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "wordfreq: cannot open '%s'\n", path);
        return 2;
    }

    unsigned long long bytes = 0, lines = 0, words = 0;
    char word[MAX_WORD];
    size_t wlen = 0;
    int in_word = 0;
    int pending_apostrophe = 0;
    int last = -1;
    int c;

    while ((c = getc(f)) != EOF) {
        bytes++;
        last = c;
        if (c == '\n') lines++;
        if (is_word_char(c)) {
            if (pending_apostrophe) {
                if (wlen < MAX_WORD) word[wlen++] = '\'';
                pending_apostrophe = 0;
            }
            if (wlen < MAX_WORD) word[wlen++] = (char)((c >= 'A' && c <= 'Z') ? c + 32 : c);
            in_word = 1;
        } else if (c == '\'' && in_word && !pending_apostrophe) {
            pending_apostrophe = 1;
        } else if (in_word) {
            if (count_word(word, wlen) != 0) goto oom;
            words++;
            wlen = 0;
            in_word = 0;
            pending_apostrophe = 0;
        }
    }
    if (ferror(f)) {
        fprintf(stderr, "wordfreq: read error on '%s'\n", path);
        fclose(f);
        return 1;
    }
    fclose(f);
    if (in_word) {
        if (count_word(word, wlen) != 0) goto oom;
        words++;
    }
    if (bytes > 0 && last != '\n') lines++;

    /* Compact the table and sort it. */
    size_t n = 0;
    for (size_t i = 0; i < table_cap; i++)
        if (table[i].word) table[n++] = table[i];
    qsort(table, n, sizeof *table, cmp_entries);

    printf("file: %s\n", path);
    printf("bytes: %llu\n", bytes);
    printf("lines: %llu\n", lines);
    printf("words: %llu\n", words);
    printf("unique: %zu\n", n);
    printf("top:\n");
    for (size_t i = 0; i < n && i < TOP_N; i++)
        printf("%2zu. %-16s %lu\n", i + 1, table[i].word, table[i].count);
    return 0;

oom:
    fprintf(stderr, "wordfreq: out of memory\n");
    return 1;
}

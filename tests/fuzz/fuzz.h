/*
 * fuzz.h - what every harness in tests/fuzz/ defines, for libFuzzer and
 * for replay.c, which runs the same harnesses over files in `make check`.
 */
#ifndef FUZZ_H
#define FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A broken promise of the code under test: a crash the fuzzer reports. */
#define FUZZ_CHECK(cond)                                                       \
	do {                                                                   \
		if (!(cond))                                                   \
			fuzz_failed(__FILE__, __LINE__, #cond);                \
	} while (0)

static inline void __attribute__((noreturn))
fuzz_failed(const char *file, int line, const char *what)
{
	fprintf(stderr, "%s:%d: broken promise: %s\n", file, line, what);
	abort();
}

#endif

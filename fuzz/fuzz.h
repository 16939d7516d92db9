/*
 * fuzz.h - the libFuzzer entry point each fuzz/fuzz_*.c harness defines.
 * Built two ways: with clang -fsanitize=fuzzer (make fuzz) and with
 * fuzz/replay.c's main() (make test replays the committed corpus with gcc).
 */
#ifndef STRATA_FUZZ_H
#define STRATA_FUZZ_H

#include <stddef.h>
#include <stdint.h>

/* One input; returns 0 (libFuzzer's contract). Must not leak or keep
 * state that changes the next input's outcome. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif

# Strata - one non-recursive Makefile.  `make help` lists the targets.

CC = gcc
CFLAGS ?= -O2 -g
LDFLAGS ?=
BUILD ?= build

# OpenMP is for the bench tools and mkmodel; the engine uses only the simd
# pragmas, so `make tsan` builds with OPENMP=-fopenmp-simd (no libgomp,
# whose uninstrumented runtime TSan cannot see into)
OPENMP ?= -fopenmp

override CFLAGS += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter \
	$(OPENMP) -I. -MMD -MP
override LDLIBS += $(OPENMP) -luring -lnuma -lpcre2-8 -lm \
	-L/usr/lib/x86_64-linux-gnu/openblas-pthread -lopenblas
BLAS_CFLAGS = -I/usr/include/x86_64-linux-gnu/openblas-pthread

# The fabric's MPI backend (--fabric mpi): built where Open MPI's mpicc is
# (tests/deps.sh installs it), or with MPI=1; MPI=0 builds a stub that
# says how to get it. Only engine/fabric_mpi.c sees mpi.h.
MPI ?= $(if $(shell command -v mpicc 2>/dev/null),1,0)
ifeq ($(MPI),1)
MPI_CFLAGS := -DSTRATA_MPI $(shell mpicc --showme:compile)
override LDLIBS += $(shell mpicc --showme:link)
endif

# per-file ISA flags
AVX2_FLAGS = -mavx2 -mfma -mf16c
AVX512_FLAGS = -mavx2 -mfma -mf16c -mavx512f -mavx512bw -mavx512vl \
	-mavx512dq -mavx512vnni

CACHE ?= $(or $(STRATA_CACHE),$(HOME)/.cache/strata)
SMOLLM2 = $(CACHE)/SmolLM2-135M-Instruct.Q4_1.gguf
PYTHON ?= python3
# llama.cpp's vocabulary test files for test_tokenizer, unpacked from the
# pinned llama-cpp-python sdist by tests/fetch-vocab.sh
SDIST_VERSION = $(shell sed -n 's/^SDIST_VERSION=//p' bench/llamacpp-sdist.sh)
VOCAB_DIR = $(CACHE)/llama-vocab-$(SDIST_VERSION)
TEST_ENV = STRATA_MODEL=$(SMOLLM2) STRATA_VOCAB_DIR=$(VOCAB_DIR)

ifeq ($(V),1)
Q =
else
Q = @
endif

LIB_SRCS = \
	kernels/kern.c \
	kernels/kern_ref.c \
	kernels/kern_ref_k.c \
	kernels/kern_avx2.c \
	kernels/kern_avx512.c \
	kernels/kern_avx2_k.c \
	kernels/kern_avx512_k.c \
	kernels/ops.c \
	models/gguf.c \
	models/gguf_write.c \
	models/shapes.c \
	models/llama_model.c \
	models/tokenizer.c \
	models/chat.c \
	models/util.c \
	memtier/arena.c \
	memtier/memtier.c \
	memtier/flash.c \
	memtier/uio.c \
	memtier/kvcache.c \
	memtier/trace.c \
	engine/plan.c \
	engine/nmu.c \
	engine/fabric.c \
	engine/fabric_mpi.c \
	engine/layer.c \
	engine/flags.c \
	engine/forward.c \
	engine/sampler.c \
	engine/stats.c

LIB_OBJS = $(LIB_SRCS:%.c=$(BUILD)/%.o)
LIB = $(BUILD)/libstrata.a

TEST_NAMES = \
	test_kernels \
	test_arena \
	test_gguf \
	test_tokenizer \
	test_sampler \
	test_flags \
	test_decode \
	test_shapes \
	test_sim \
	test_plan \
	test_nmu \
	test_fabric \
	test_mvbench

TEST_BINS = $(TEST_NAMES:%=$(BUILD)/tests/%)

PROGS = decode models/mkmodel bench/kbench bench/probe bench/simulate

# libFuzzer harnesses (fuzz/*.c); make test replays each one's committed
# corpus through fuzz/replay.c, make fuzz runs them under clang
FUZZ_NAMES = \
	fuzz_gguf \
	fuzz_header \
	fuzz_tokenizer \
	fuzz_chat \
	fuzz_flags

FUZZ_REPLAY = $(FUZZ_NAMES:%=$(BUILD)/fuzz/replay_%)
FUZZ_SECONDS ?= 60

ALL_OBJS = $(LIB_OBJS) $(PROGS:%=$(BUILD)/%.o) $(TEST_BINS:%=%.o) \
	$(FUZZ_NAMES:%=$(BUILD)/fuzz/%.o) $(BUILD)/fuzz/replay.o \
	$(BUILD)/bench/mvbench.o $(BUILD)/bench/probe_kern.o \
	$(BUILD)/bench/probe_sys.o $(BUILD)/bench/probe_fabric.o $(SIM_OBJS)

.PHONY: all deps demo test test-mpi test-c test-py asan tsan fuzz fuzz-corpus help \
	clean models vocab bench

all: $(PROGS)

help:
	@echo "make deps    install missing Debian/PyPI packages"
	@echo "make         build ./decode, models/mkmodel, bench/kbench"
	@echo "make demo    deps, build, fetch SmolLM2, decode on the flash tier"
	@echo "make test    deps, build, model, every test"
	@echo "make test-mpi  --fabric mpi on one host and across namespace hosts"
	@echo "make asan    the C tests under ASan+UBSan"
	@echo "make tsan    the unit pool and the engine's tests under TSan"
	@echo "make fuzz    each libFuzzer harness FUZZ_SECONDS (60) under ASan+UBSan (clang)"
	@echo "make bench   decode speed side by side with llama.cpp"
	@echo "bench/validate  simulator predictions vs real runs (~15 min)"

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC $<")
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/engine/fabric_mpi.o: override CFLAGS += $(MPI_CFLAGS)
$(BUILD)/kernels/kern_avx2.o $(BUILD)/kernels/kern_avx2_k.o: override CFLAGS += $(AVX2_FLAGS)
$(BUILD)/kernels/kern_avx512.o $(BUILD)/kernels/kern_avx512_k.o: override CFLAGS += $(AVX512_FLAGS)
$(BUILD)/engine/forward.o $(BUILD)/engine/layer.o: override CFLAGS += $(BLAS_CFLAGS)
$(BUILD)/kernels/ops.o: override CFLAGS += -O3

$(LIB): $(LIB_OBJS)
	@$(if $(Q),echo "  AR $@")
	$(Q)rm -f $@ && ar rcs $@ $^

decode: $(BUILD)/decode.o $(LIB)
	@$(if $(Q),echo "  LD $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

models/mkmodel: $(BUILD)/models/mkmodel.o $(LIB)
	@$(if $(Q),echo "  LD $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

BENCH_OBJS = $(BUILD)/bench/mvbench.o

# the simulator: the model (sim.c), its profile reader (sim_profile.c)
SIM_OBJS = \
	$(BUILD)/bench/sim.o \
	$(BUILD)/bench/sim_profile.o

bench/simulate: $(BUILD)/bench/simulate.o $(SIM_OBJS) $(LIB)
	@$(if $(Q),echo "  LD $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -ljansson

$(BUILD)/tests/test_sim: $(BUILD)/tests/test_sim.o $(SIM_OBJS) $(LIB)
	@$(if $(Q),echo "  LD $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -ljansson -lcmocka

$(BUILD)/tests/test_mvbench: $(BUILD)/tests/test_mvbench.o $(BENCH_OBJS) $(LIB)
	@$(if $(Q),echo "  LD $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcmocka

bench/kbench: $(BUILD)/bench/kbench.o $(BENCH_OBJS) $(LIB)
	@$(if $(Q),echo "  LD $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

bench/probe: $(BUILD)/bench/probe.o $(BUILD)/bench/probe_kern.o \
		$(BUILD)/bench/probe_sys.o $(BUILD)/bench/probe_fabric.o \
		$(BENCH_OBJS) $(LIB)
	@$(if $(Q),echo "  LD $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/decode: $(BUILD)/decode.o $(LIB)
	@$(if $(Q),echo "  LD $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/decode.o: engine/decode.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC $<")
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(LIB)
	@$(if $(Q),echo "  LD $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcmocka

$(BUILD)/fuzz/replay_%: $(BUILD)/fuzz/%.o $(BUILD)/fuzz/replay.o $(LIB)
	@$(if $(Q),echo "  LD $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# the libFuzzer binaries (BUILD=build-fuzz, CC=clang, from `make fuzz`)
$(BUILD)/fuzz/bin_%: $(BUILD)/fuzz/%.o $(LIB)
	@$(if $(Q),echo "  LD $@")
	$(Q)$(CC) $(LDFLAGS) -fsanitize=fuzzer -o $@ $^ $(LDLIBS)

deps:
	$(Q)tests/deps.sh

models: $(SMOLLM2) $(VOCAB_DIR)/.complete

vocab: $(VOCAB_DIR)/.complete

$(VOCAB_DIR)/.complete:
	$(Q)STRATA_CACHE=$(CACHE) tests/fetch-vocab.sh >/dev/null

$(SMOLLM2):
	STRATA_CACHE=$(CACHE) models/fetch-smollm2.sh

demo: deps
	$(Q)$(MAKE) --no-print-directory all models
	./decode -m $(SMOLLM2) --tier flash --kv-tier flash -p "Once upon a time" -n 64 --stats

# Every test: the cmocka programs, the command line, the probe, the
# independent numpy reference and the llama.cpp fixtures, each under a
# timeout by tests/run.sh (STRATA_ALLOWED_SKIPS=tests/allowed-skips.txt
# makes a skip for any other reason fail, as .ci/run does).
TEST_CMDS = $(TEST_BINS) "tests/test_cli.sh ./decode" "tests/test_chips.sh ./decode" \
	"tests/test_mpi.sh ./decode" \
	"tests/probe_check.sh bench/probe" "$(PYTHON) tests/ref_check.py" \
	"tests/sim_check.sh bench/simulate ./decode" \
	tests/requant_check.sh tests/bench_check.sh \
	$(foreach f,$(FUZZ_NAMES),"$(BUILD)/fuzz/replay_$(f) fuzz/corpus/$(f)")

test: deps
	$(Q)$(MAKE) --no-print-directory all $(TEST_BINS) $(FUZZ_REPLAY) models
	$(Q)$(TEST_ENV) tests/run.sh $(TEST_CMDS)

# --fabric mpi alone: one host and namespace hosts over TCP (root)
test-mpi: deps
	$(Q)$(MAKE) --no-print-directory all models
	$(Q)$(TEST_ENV) tests/run.sh "tests/test_mpi.sh ./decode"

ASAN_TESTS = $(TEST_NAMES:%=build-asan/tests/%)
ASAN_REPLAY = $(FUZZ_NAMES:%=build-asan/fuzz/replay_%)

asan: deps
	$(Q)$(MAKE) --no-print-directory BUILD=build-asan \
		CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer" \
		LDFLAGS="-fsanitize=address,undefined" \
		$(ASAN_TESTS) $(ASAN_REPLAY) build-asan/decode models
	$(Q)ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1 \
		$(TEST_ENV) tests/run.sh $(ASAN_TESTS) \
		$(foreach f,$(FUZZ_NAMES),"build-asan/fuzz/replay_$(f) fuzz/corpus/$(f)") \
		"tests/test_cli.sh build-asan/decode"

# Each harness for FUZZ_SECONDS under ASan+UBSan (clang, libFuzzer): new
# inputs go to build-fuzz/corpus/NAME, the committed fuzz/corpus/NAME is
# read only; a crash leaves build-fuzz/crash-NAME-* and fails the target.
FUZZ_CFLAGS = -O1 -g -fsanitize=address,undefined,fuzzer-no-link \
	-fno-sanitize-recover=undefined -fno-omit-frame-pointer
fuzz:
	$(Q)tests/deps.sh --fuzz
	$(Q)$(MAKE) --no-print-directory BUILD=build-fuzz CC=clang \
		CFLAGS="$(FUZZ_CFLAGS)" LDFLAGS="-fsanitize=address,undefined" \
		$(FUZZ_NAMES:%=build-fuzz/fuzz/bin_%) models
	$(Q)for f in $(FUZZ_NAMES); do \
		mkdir -p build-fuzz/corpus/$$f || exit 1; \
		echo "fuzz: $$f for $(FUZZ_SECONDS) s"; \
		$(TEST_ENV) build-fuzz/fuzz/bin_$$f -max_total_time=$(FUZZ_SECONDS) \
			-print_final_stats=1 -artifact_prefix=build-fuzz/crash-$$f- \
			build-fuzz/corpus/$$f fuzz/corpus/$$f 2>build-fuzz/$$f.log || \
			{ tail -n 40 build-fuzz/$$f.log; exit 1; }; \
		grep -E "stat::number_of_executed_units|cov:" build-fuzz/$$f.log | tail -n 2; \
	done

# the committed seed corpus, regenerated (synthetic files only)
fuzz-corpus: all
	$(Q)fuzz/mkcorpus.sh

# The threaded tests under ThreadSanitizer; any report fails the run (exit
# 66); test_decode takes ~9 minutes under TSan, hence the longer timeout.
# Built without libgomp (see OPENMP); OPENBLAS_NUM_THREADS=1 keeps
# OpenBLAS from starting a pool of its own, uninstrumented, threads.
TSAN_TESTS = build-tsan/tests/test_nmu build-tsan/tests/test_decode

tsan:
	$(Q)$(MAKE) --no-print-directory BUILD=build-tsan OPENMP=-fopenmp-simd \
		CFLAGS="-O1 -g -fsanitize=thread -fno-omit-frame-pointer" \
		LDFLAGS="-fsanitize=thread" $(TSAN_TESTS) models
	$(Q)TSAN_OPTIONS="halt_on_error=1 exitcode=66 second_deadlock_stack=1" \
		OPENBLAS_NUM_THREADS=1 STRATA_MODEL=$(SMOLLM2) \
		TEST_TIMEOUT=$${TEST_TIMEOUT:-1800} tests/run.sh $(TSAN_TESTS)

# the whole benchmark report for this machine (bench/run-all --help); not
# part of make test. BENCH_FLAGS=-q for quick sizes.
bench: all
	bench/run-all $(BENCH_FLAGS)

clean:
	rm -rf build build-asan build-tsan build-fuzz $(PROGS)

-include $(ALL_OBJS:.o=.d)

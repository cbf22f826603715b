# osprey — one binary (build/osprey), one test runner, one Makefile.
#   make            build build/osprey (CUDA backend too when nvcc is found; CUDA=0 to skip it)
#   make test       install what is missing, check the include rule, build, run every CPU test,
#                   then the unit, integration and stress suites again built with ASan + UBSan
#                   (ends with Check's summary)
#   make serve      generate the default model if needed and serve it on 127.0.0.1:8000
#   make install    the binary, systemd units, example config, nginx site (PREFIX, DESTDIR)
#   make test-gpu   GPU kernel checks and the HF oracle (on a machine with a GPU)
#   make fuzz       run every libFuzzer harness for FUZZ_SECONDS each (FUZZ_MERGE=1 keeps new inputs)
# V=1 prints every command; SANITIZE=1 builds with ASan + UBSan (into build-san/, without CUDA);
# TEST_SAN=0 leaves the sanitized pass out of make test.

CC       ?= cc
PKGS     := libmicrohttpd libcjson libuv libpcre2-8 libutf8proc libxxhash libsystemd
Q        := $(if $(V),,@)
BUILD    ?= build$(if $(filter 1,$(SANITIZE)),-san)

CFLAGS   ?= -O2 -g
CFLAGS   += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wstrict-prototypes -Wno-unused-parameter \
            -MMD -MP -pthread -I. $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS   += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm -lpthread
ifeq ($(SANITIZE),1)
  CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
  LDFLAGS += -fsanitize=address,undefined
endif

# CUDA: on when nvcc is found unless CUDA=0. The CPU build needs no CUDA at all.
NVCC     ?= $(or $(shell command -v nvcc 2>/dev/null),$(wildcard /usr/local/cuda/bin/nvcc))
# ASan's shadow memory and the CUDA driver's address-space reservations do not mix: a
# sanitized build is a CPU build unless CUDA=1 asks otherwise.
CUDA     ?= $(if $(filter 1,$(SANITIZE)),0,$(if $(NVCC),1,0))
ifeq ($(CUDA),1)
  CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
  NVFLAGS   += -O3 -std=c++17 -I. -MMD -MP -lineinfo -Xcompiler -fPIC \
               -gencode=arch=compute_90a,code=sm_90a -gencode=arch=compute_90a,code=compute_90a
  CFLAGS    += -DOSPREY_CUDA -isystem $(CUDA_HOME)/include
  LDLIBS    += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lnccl -lcublasLt -lcublas -lcudart_static -ldl -lrt -lstdc++
  CU_SRCS   := $(wildcard kernels/*.cu)
  CUDA_SRCS := $(wildcard engine/cuda/*.c kernels/*.c)
endif

# Everything but main() is shared by the binary and the test runners.
LIB_SRCS  := $(filter-out engine/cuda/%,$(wildcard engine/*.c engine/*/*.c scheduler/*.c config/*.c server/*.c)) $(CUDA_SRCS)
LIB_SRCS  := $(filter-out server/main.c,$(LIB_SRCS))
LIB_OBJS  := $(LIB_SRCS:%.c=$(BUILD)/%.o) $(CU_SRCS:%.cu=$(BUILD)/%.o)
TEST_SRCS := $(wildcard tests/unit/*.c tests/integration/*.c tests/stress/*.c tests/deploy/*.c)
TEST_OBJS := $(TEST_SRCS:%.c=$(BUILD)/%.o)
GPU_SRCS  := $(wildcard tests/gpu/*.c)
GPU_OBJS  := $(GPU_SRCS:%.c=$(BUILD)/%.o)

.PHONY: FORCE all install test check-includes test-gpu serve fuzz fuzz-build fuzz-brief deps clean
all: $(BUILD)/osprey
FORCE:

$(BUILD)/osprey: $(BUILD)/server/main.o $(LIB_OBJS)
	$(Q)$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)
	@echo "  LD      $@"

# Objects depend on the flags they were built with: switching CUDA or SANITIZE rebuilds.
# Expanded once, here: the target-specific additions below (tests' -I, the CPU ops' -O3)
# would otherwise reach this prerequisite too, and each target would rewrite the stamp.
FLAGS_STAMP := $(CFLAGS) $(NVFLAGS)
$(BUILD)/.flags: FORCE
	@mkdir -p $(@D)
	@echo '$(FLAGS_STAMP)' | cmp -s - $@ || echo '$(FLAGS_STAMP)' > $@

$(BUILD)/%.o: %.c $(BUILD)/.flags
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

# The CPU reference ops: -O3 so that their plain loops vectorize (portable: no -march).
$(BUILD)/engine/cpu/%.o: CFLAGS += -O3

$(BUILD)/%.o: %.cu $(BUILD)/.flags
	@mkdir -p $(@D)
	@$(if $(Q),echo "  NVCC    $<")
	$(Q)$(NVCC) $(NVFLAGS) -c $< -o $@

# The test runner: every tests/unit, tests/integration, tests/stress and tests/deploy file defines Suite *<name>_suite(void);
# the list is generated so that adding a file is all it takes to add a suite.
$(BUILD)/tests/suites.h: $(TEST_SRCS)
	@mkdir -p $(@D)
	$(Q)grep -ho '^Suite \*[a-z0-9_]*_suite(void)' $(TEST_SRCS) | sed 's/^Suite \*\(.*\)(void)/SUITE(\1)/' | sort > $@.tmp
	$(Q)cmp -s $@.tmp $@ || mv $@.tmp $@; rm -f $@.tmp

$(BUILD)/tests/unit/test_main.o: $(BUILD)/tests/suites.h
$(BUILD)/tests/%.o: CFLAGS += -I$(BUILD)/tests $(shell pkg-config --cflags check)

$(BUILD)/osprey-tests: $(TEST_OBJS) $(LIB_OBJS)
	$(Q)$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS) $(shell pkg-config --libs check)
	@echo "  LD      $@"

$(BUILD)/osprey-gpu-tests: $(GPU_OBJS) $(LIB_OBJS)
	$(Q)$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)
	@echo "  LD      $@"

# make install: the binary, osprey.service, osprey@.service (one per GPU), the example config and
# the nginx site (scripts/install.sh says where); PREFIX (/usr/local), SYSCONFDIR (/etc), DESTDIR.
PREFIX     ?= /usr/local
SYSCONFDIR ?= /etc
install: all
	$(Q)PREFIX=$(PREFIX) SYSCONFDIR=$(SYSCONFDIR) DESTDIR=$(DESTDIR) BUILD=$(BUILD) scripts/install.sh

# Grammar figures (tests/bench/bench_grammar.c): prints, asserts nothing.
$(BUILD)/bench-grammar: $(BUILD)/tests/bench/bench_grammar.o $(LIB_OBJS)
	$(Q)$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)
	@echo "  LD      $@"

# Grammar masks in a decode step at batch 64, 64 schemas (tests/bench/bench_grammar_batch.c):
# prints, asserts nothing.
$(BUILD)/bench-grammar-batch: $(BUILD)/tests/bench/bench_grammar_batch.o $(LIB_OBJS)
	$(Q)$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)
	@echo "  LD      $@"

# Tokenizer and chat template figures (tests/bench/bench_text.c): prints, asserts nothing.
$(BUILD)/bench-text: $(BUILD)/tests/bench/bench_text.o $(LIB_OBJS)
	$(Q)$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)
	@echo "  LD      $@"

# Install missing Debian packages (as root) and the npm test tools.
deps:
	$(Q)scripts/install-deps.sh

# make check-includes: the one-way include rule of docs/ARCHITECTURE.md; a violation fails.
check-includes:
	$(Q)scripts/check-includes.sh

# make test: the include rule first, then CPU unit + integration + stress tests, also built
# with ASan + UBSan (build-san/) unless this already is that build or TEST_SAN=0. The last
# line is Check's summary.
TEST_SAN ?= $(if $(filter 1,$(SANITIZE)),0,1)
test: deps check-includes
	$(Q)$(MAKE) --no-print-directory all $(BUILD)/osprey-tests $(if $(filter 1,$(CUDA)),$(BUILD)/osprey-gpu-tests) fuzz-build
	$(Q)$(if $(filter 1,$(TEST_SAN)),$(MAKE) --no-print-directory SANITIZE=1 CUDA=0 all build-san/osprey-tests)
	$(Q)FUZZ_BRIEF_SECONDS=$(FUZZ_BRIEF_SECONDS) scripts/run-tests.sh $(BUILD) $(if $(filter 1,$(TEST_SAN)),build-san)

# make test-gpu: kernels against the CPU reference, graphs against eager (needs a GPU).
test-gpu: all $(BUILD)/osprey-gpu-tests
	$(Q)$(BUILD)/osprey-gpu-tests

# make serve: the default model (generated once) on 127.0.0.1:8000.
MODEL ?= models/default
serve: deps all
	$(Q)test -f $(MODEL)/config.json || $(BUILD)/osprey gen-model --config tiny --out $(MODEL)
	$(Q)$(BUILD)/osprey serve --model $(MODEL)

# ---- fuzzing (tests/fuzz/README.md): libFuzzer + ASan + UBSan, clang-14, never CUDA ----
# The parsers are compiled again into build-fuzz/; each harness links only what it needs from
# one archive. make fuzz runs every harness FUZZ_SECONDS; make test runs fuzz-brief, which
# replays every committed corpus and fuzzes each harness FUZZ_BRIEF_SECONDS.
FUZZ_CC       ?= clang-14
FUZZ_BUILD    := build-fuzz
FUZZ_SECONDS  ?= 60
FUZZ_BRIEF_SECONDS ?= 3
FUZZ_SAN      := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS   := -g -O1 $(FUZZ_SAN) -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter \
                 -MMD -MP -pthread -I. $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
FUZZ_LIB_SRCS := $(wildcard engine/base/*.c engine/tokenizer/*.c engine/chat_template/*.c engine/grammar/*.c) \
                 engine/model/safetensors.c engine/model/model.c engine/model/model_families.c \
                 engine/model/model_experts.c engine/model/model_gptoss.c engine/model/model_dummy.c \
                 engine/model/quant.c engine/model/mxfp4.c \
                 engine/model/kv_groups.c \
                 engine/sampler.c engine/gen_params.c \
                 server/openai_parse.c server/openai_grammar.c server/json_text.c server/openai_render.c \
                 server/json_out.c server/openai_fields.c server/openai_tools.c server/tool_parser.c server/tool_grammar.c \
                 server/harmony.c \
                 server/responses.c server/chat_prompt.c server/sse.c server/auth.c $(wildcard server/http*.c) \
                 server/metrics.c \
                 config/config.c config/options.c
FUZZ_LIB_OBJS := $(FUZZ_LIB_SRCS:%.c=$(FUZZ_BUILD)/%.o)
FUZZ_SRCS     := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS     := $(FUZZ_SRCS:tests/fuzz/%.c=$(FUZZ_BUILD)/%)

fuzz-build: $(FUZZ_BINS)
.SECONDARY: $(FUZZ_SRCS:%.c=$(FUZZ_BUILD)/%.o)

$(FUZZ_BUILD)/%.o: %.c
	@mkdir -p $(@D)
	@$(if $(Q),echo "  FUZZCC  $<")
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@

$(FUZZ_BUILD)/libosprey-fuzz.a: $(FUZZ_LIB_OBJS)
	$(Q)rm -f $@ && ar rcs $@ $^

$(FUZZ_BUILD)/fuzz_%: $(FUZZ_BUILD)/tests/fuzz/fuzz_%.o $(FUZZ_BUILD)/libosprey-fuzz.a
	$(Q)$(FUZZ_CC) -fsanitize=fuzzer $(FUZZ_SAN) $^ -o $@ $(LDLIBS)
	@echo "  LD      $@"

fuzz: fuzz-build
	$(Q)tests/fuzz/run.sh $(if $(FUZZ_MERGE),--merge) $(FUZZ_SECONDS) $(FUZZ_BUILD) $(FUZZ_ONLY)

fuzz-brief: fuzz-build
	$(Q)tests/fuzz/run.sh --brief $(FUZZ_BRIEF_SECONDS) $(FUZZ_BUILD)

clean:
	rm -rf build build-san build-fuzz

-include $(LIB_OBJS:.o=.d) $(TEST_OBJS:.o=.d) $(GPU_OBJS:.o=.d) $(BUILD)/server/main.d
-include $(FUZZ_LIB_OBJS:.o=.d) $(FUZZ_SRCS:%.c=$(FUZZ_BUILD)/%.d)

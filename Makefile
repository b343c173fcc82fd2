# rollover - one non-recursive Makefile.
#
#   make               build everything into build/
#   make check         lint, build, run the unit and the system tests, then
#                      all of them again under ASan and UBSan
#   make run           build and run the demo (etc/rollover.conf) in the foreground
#   make install       install under $(DESTDIR)$(PREFIX)
#   make lint          clang-format, clang-tidy and cppcheck over the sources

PREFIX  ?= /usr/local
DESTDIR ?=
BINDIR   = $(PREFIX)/bin
SBINDIR  = $(PREFIX)/sbin
LIBEXECDIR = $(PREFIX)/lib/rollover
MANDIR   = $(PREFIX)/share/man
SYSCONFDIR ?= /etc
UNITDIR  ?= $(PREFIX)/lib/systemd/system
CONFFILE  = $(SYSCONFDIR)/rollover/rollover.conf
MAN_PAGES = $(wildcard man/*.[1-8])
# The units and the example config name the /usr/local and /etc paths.
FIX_PATHS = sed -e 's|/usr/local/|$(PREFIX)/|g' \
                -e 's|/etc/rollover/|$(SYSCONFDIR)/rollover/|g'

CC      ?= cc
PYTHON  ?= /usr/bin/python3
CFLAGS  ?= -O2 -g
# What the code needs, whatever CFLAGS a user gives.
BASE_CFLAGS = -std=gnu11 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
              -Wmissing-prototypes -Wformat=2 -D_GNU_SOURCE \
              -DROLLOVER_DEFAULT_CONFIG='"$(SYSCONFDIR)/rollover/rollover.conf"'
ALL_CFLAGS = $(CFLAGS) $(BASE_CFLAGS)
LDFLAGS ?=

CONFIG_CFLAGS := $(shell pkg-config --cflags libconfig)
CONFIG_LIBS   := $(shell pkg-config --libs libconfig)
INOTIFY_LIBS  := -linotifytools

B = build

.DELETE_ON_ERROR:
.SUFFIXES:
.PHONY: all check check-unit check-system check-asan check-systemd run \
        install uninstall clean lint bench fuzz check-fuzz-replay chaos

# ---- the supervisor ----------------------------------------------------

# The parts that unit tests link against: everything but main.c.
SUP_LIB_SRCS = supervisor/addr.c supervisor/config.c supervisor/log.c \
               supervisor/request.c supervisor/util.c
SUP_SRCS     = $(SUP_LIB_SRCS) supervisor/group.c supervisor/listener.c \
               supervisor/loop.c supervisor/notify.c supervisor/pidfile.c \
               supervisor/spawn.c supervisor/worker.c supervisor/binary.c \
               supervisor/control.c supervisor/sdnotify.c supervisor/quick.c \
               supervisor/watch.c supervisor/reaper.c \
               supervisor/state.c supervisor/upgrade.c supervisor/main.c
SUP_OBJS     = $(SUP_SRCS:%.c=$(B)/obj/%.o)
SUP_LIB_OBJS = $(SUP_LIB_SRCS:%.c=$(B)/obj/%.o)

CTL_SRCS = supervisor/rolloverctl.c
CTL_OBJS = $(CTL_SRCS:%.c=$(B)/obj/%.o)

# ---- the worker library and the example workers ------------------------

WLIB_SRCS = worker/rollover_worker.c worker/reactor.c
WLIB_OBJS = $(WLIB_SRCS:%.c=$(B)/obj/%.o)
HTTP_OBJS = $(B)/obj/worker/http.o
HELLO_OBJS = $(B)/obj/worker/hello.o $(HTTP_OBJS)
ECHO_OBJS = $(B)/obj/worker/echo.o

BINS = $(B)/rollover $(B)/rolloverctl $(B)/rollover-hello $(B)/rollover-echo

all: $(BINS)

$(B)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(CONFIG_CFLAGS) -MMD -MP -c -o $@ $<

$(B)/rollover: $(SUP_OBJS)
	$(CC) $(LDFLAGS) -o $@ $^ $(CONFIG_LIBS) $(INOTIFY_LIBS)

$(B)/rolloverctl: $(CTL_OBJS) $(SUP_LIB_OBJS)
	$(CC) $(LDFLAGS) -o $@ $^ $(CONFIG_LIBS)

$(B)/rollover-hello: $(HELLO_OBJS) $(WLIB_OBJS)
	$(CC) $(LDFLAGS) -o $@ $^

$(B)/rollover-echo: $(ECHO_OBJS) $(WLIB_OBJS)
	$(CC) $(LDFLAGS) -o $@ $^

# ---- tests -------------------------------------------------------------

UNIT_SRCS = $(wildcard tests/unit/test_*.c)
UNIT_BINS = $(UNIT_SRCS:tests/unit/%.c=$(B)/tests/%)

$(B)/tests/%: tests/unit/%.c $(SUP_LIB_OBJS)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(CONFIG_CFLAGS) -Isupervisor -o $@ $^ \
	    $(CONFIG_LIBS) -lcmocka

# The worker library's tests link the worker objects instead.
WORKER_UNIT_BINS = $(B)/tests/test_reactor $(B)/tests/test_http
$(WORKER_UNIT_BINS): $(B)/tests/%: tests/unit/%.c $(WLIB_OBJS) $(HTTP_OBJS)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -Iworker $(LDFLAGS) -o $@ $^ -lcmocka

# Workers for the system tests: hello variants that answer differently,
# and binaries that fail in one way each.  Those are built without the
# sanitizers even under check-asan, so that they fail the way they say.
TEST_WORKERS = $(B)/tests/hello-a $(B)/tests/hello-b $(B)/tests/bad-exit \
               $(B)/tests/bad-noready $(B)/tests/bad-crash $(B)/tests/bad-slow \
               $(HOSTILE_MODES:%=$(B)/tests/hostile-%)
HOSTILE_MODES = close daemon notify flood

$(B)/tests/hello-%: worker/hello.c $(HTTP_OBJS) $(WLIB_OBJS)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -Iworker '-DHELLO_MESSAGE="variant $*\n"' -o $@ $^

$(B)/tests/bad-%: tests/workers/misbehave.c $(WLIB_SRCS)
	@mkdir -p $(@D)
	$(CC) -O2 $(BASE_CFLAGS) -Iworker -DMODE_$(shell echo $* | tr a-z A-Z) \
	    -o $@ $^

$(B)/tests/hostile-%: tests/workers/hostile.c $(WLIB_SRCS)
	@mkdir -p $(@D)
	$(CC) -O2 $(BASE_CFLAGS) -Iworker '-DHOSTILE_MODE="$*"' -o $@ $^

check-unit: $(UNIT_BINS) check-fuzz-replay
	@for t in $(UNIT_BINS); do echo "== $$t"; $$t || exit 1; done

# Fuzzing: libFuzzer harnesses in tests/fuzz/fuzz_NAME.c.  `make fuzz`
# builds them with clang and runs each for FUZZ_SECONDS, starting from
# the seeds and regressions in tests/fuzz/ (new inputs go to $(B)/fuzz/,
# a crash to $(B)/fuzz/crashes/NAME/ and fails the target).  check-unit
# replays every seed and regression through the same harnesses built with
# $(CC) and replay.c's main(), so `make check` needs no libFuzzer.
FUZZ_NAMES    = config request status
FUZZ_SECONDS ?= 60
FUZZ_CC      ?= clang
FUZZ_FLAGS    = -O1 -g -fno-omit-frame-pointer \
                -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
FUZZ_LIB_OBJS = $(SUP_LIB_SRCS:%.c=$(B)/fuzz/obj/%.o)
FUZZ_ENV      = LSAN_OPTIONS=suppressions=$(CURDIR)/tests/fuzz/lsan.supp
FUZZ_INPUTS   = $$(ls -d tests/fuzz/corpus/$$h tests/fuzz/regressions/$$h \
                  2>/dev/null)

$(B)/fuzz/obj/%.o: %.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_FLAGS) $(BASE_CFLAGS) $(CONFIG_CFLAGS) -MMD -MP \
	    -c -o $@ $<

$(B)/fuzz/fuzz-%: $(B)/fuzz/obj/tests/fuzz/fuzz_%.o $(FUZZ_LIB_OBJS)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $^ $(CONFIG_LIBS)

$(B)/fuzz/replay-%: $(B)/obj/tests/fuzz/fuzz_%.o $(B)/obj/tests/fuzz/replay.o \
                    $(SUP_LIB_OBJS)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(CONFIG_LIBS)

fuzz: $(FUZZ_NAMES:%=$(B)/fuzz/fuzz-%)
	@mkdir -p $(B)/fuzz/tmp
	@for h in $(FUZZ_NAMES); do echo "== fuzz $$h for $(FUZZ_SECONDS) s"; \
	    mkdir -p $(B)/fuzz/corpus/$$h $(B)/fuzz/crashes/$$h && \
	    TMPDIR=$(CURDIR)/$(B)/fuzz/tmp $(FUZZ_ENV) $(B)/fuzz/fuzz-$$h \
	        -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	        -dict=tests/fuzz/$$h.dict \
	        -artifact_prefix=$(B)/fuzz/crashes/$$h/ \
	        $(B)/fuzz/corpus/$$h $(FUZZ_INPUTS) || exit 1; done

# Named only through the pattern rules above, but worth keeping.
.SECONDARY: $(FUZZ_NAMES:%=$(B)/obj/tests/fuzz/fuzz_%.o) \
            $(FUZZ_NAMES:%=$(B)/fuzz/obj/tests/fuzz/fuzz_%.o) \
            $(B)/obj/tests/fuzz/replay.o $(FUZZ_LIB_OBJS)

check-fuzz-replay: $(FUZZ_NAMES:%=$(B)/fuzz/replay-%)
	@for h in $(FUZZ_NAMES); do \
	    $(FUZZ_ENV) $(B)/fuzz/replay-$$h $(FUZZ_INPUTS) || exit 1; done

check-system: all $(TEST_WORKERS)
	ROLLOVER_BUILD=$(CURDIR)/$(B) $(PYTHON) -m pytest -q tests/system

check: lint all check-unit check-system check-asan

# The whole suite again with every binary built with AddressSanitizer and
# UndefinedBehaviorSanitizer; a report in a daemon's log fails the test.
ASAN_FLAGS = -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
             -fno-sanitize-recover=undefined
check-asan:
	$(MAKE) B=$(B)-asan CFLAGS="$(ASAN_FLAGS)" LDFLAGS="$(ASAN_FLAGS)" \
	    all $(TEST_WORKERS:$(B)/%=$(B)-asan/%) check-unit
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	ROLLOVER_BUILD=$(CURDIR)/$(B)-asan $(PYTHON) -m pytest -q tests/system

# The shipped units under a real systemd 252 in a systemd-nspawn container
# (root, debootstrap and systemd-container needed; not part of `make check`,
# since its first run downloads a Debian root).
check-systemd: all
	$(PYTHON) -m pytest -q tests/systemd

# Faults under load for CHAOS_SECONDS, from a random seed unless
# CHAOS_SEED is given; prints what it did and saw, fails on any error it
# cannot attribute.  tests/system/test_chaos.py runs a short one in check.
CHAOS_SECONDS = 180
CHAOS_SEED =
chaos: all $(TEST_WORKERS)
	ROLLOVER_BUILD=$(CURDIR)/$(B) $(PYTHON) tests/chaos/chaos.py \
	    --duration $(CHAOS_SECONDS) $(if $(CHAOS_SEED),--seed $(CHAOS_SEED))

# Benchmarks print numbers (and ratios against nginx, measured in the
# same run); they assert nothing about speed.
bench: all $(TEST_WORKERS)
	ROLLOVER_BUILD=$(CURDIR)/$(B) $(PYTHON) tests/bench/bench_rollover.py
	ROLLOVER_BUILD=$(CURDIR)/$(B) $(PYTHON) tests/bench/bench_quick.py
	ROLLOVER_BUILD=$(CURDIR)/$(B) $(PYTHON) tests/bench/bench_http.py

# Static checks: formatting, two analysers, and the manual pages.
LINT_SRCS = supervisor/*.c supervisor/*.h worker/*.c worker/*.h \
            tests/unit/*.c tests/workers/*.c tests/fuzz/*.c tests/fuzz/*.h
TIDY_CHECKS = -*,clang-analyzer-*,bugprone-*,\
  -bugprone-easily-swappable-parameters,-bugprone-reserved-identifier,\
  -bugprone-narrowing-conversions,-bugprone-macro-parentheses,\
  -bugprone-assignment-in-if-condition,\
  -clang-analyzer-security.insecureAPI.DeprecatedOrUnsafeBufferHandling,\
  -clang-analyzer-security.insecureAPI.strcpy,\
  -clang-analyzer-valist.Uninitialized

lint:
	clang-format --dry-run -Werror $(LINT_SRCS)
	cppcheck --quiet --error-exitcode=1 --inline-suppr --std=c11 \
	    --enable=warning,style,performance,portability -D_GNU_SOURCE \
	    -DMODE_EXIT -Isupervisor -Iworker supervisor worker tests/workers \
	    tests/fuzz
	clang-tidy --quiet --warnings-as-errors='*' -checks='$(TIDY_CHECKS)' \
	    supervisor/*.c worker/*.c -- -std=gnu11 -D_GNU_SOURCE \
	    -Isupervisor -Iworker $(CONFIG_CFLAGS)
	mandoc -Tlint -W warning man/*.[0-9]

# ---- running and installing --------------------------------------------

run: all
	$(B)/rollover -c etc/rollover.conf

install: all
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR) \
	    $(DESTDIR)$(LIBEXECDIR) $(DESTDIR)$(UNITDIR) \
	    $(DESTDIR)$(SYSCONFDIR)/rollover
	install -m 755 $(B)/rollover $(DESTDIR)$(SBINDIR)/rollover
	install -m 755 $(B)/rolloverctl $(DESTDIR)$(BINDIR)/rolloverctl
	install -m 755 $(B)/rollover-hello $(DESTDIR)$(LIBEXECDIR)/rollover-hello
	install -m 755 $(B)/rollover-echo $(DESTDIR)$(LIBEXECDIR)/rollover-echo
	for m in $(MAN_PAGES); do n=$${m##*/}; d=$(DESTDIR)$(MANDIR)/man$${n##*.}; \
	    install -d $$d && install -m 644 $$m $$d/$$n || exit 1; done
	for u in rollover.service rollover.socket; do \
	    $(FIX_PATHS) etc/$$u > $(DESTDIR)$(UNITDIR)/$$u && \
	    chmod 644 $(DESTDIR)$(UNITDIR)/$$u || exit 1; done
	test -e $(DESTDIR)$(CONFFILE) || \
	    { $(FIX_PATHS) etc/rollover.production.conf > $(DESTDIR)$(CONFFILE) && \
	      chmod 644 $(DESTDIR)$(CONFFILE); }

# The config goes only if it is still the one installed.
uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/rollover $(DESTDIR)$(BINDIR)/rolloverctl \
	    $(DESTDIR)$(LIBEXECDIR)/rollover-hello \
	    $(DESTDIR)$(LIBEXECDIR)/rollover-echo \
	    $(DESTDIR)$(UNITDIR)/rollover.service \
	    $(DESTDIR)$(UNITDIR)/rollover.socket
	for m in $(MAN_PAGES); do n=$${m##*/}; \
	    rm -f $(DESTDIR)$(MANDIR)/man$${n##*.}/$$n; done
	if $(FIX_PATHS) etc/rollover.production.conf | \
	    cmp -s - $(DESTDIR)$(CONFFILE); then rm -f $(DESTDIR)$(CONFFILE); fi
	-rmdir $(DESTDIR)$(LIBEXECDIR) $(DESTDIR)$(SYSCONFDIR)/rollover

clean:
	rm -rf $(B) $(B)-asan

-include $(shell find $(B)/obj $(B)/fuzz -name '*.d' 2>/dev/null)

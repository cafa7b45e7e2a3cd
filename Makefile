# A thin wrapper over meson for people's habits: make, make run, make test, make check, make bench.
BUILD ?= build
CHECK_BUILD ?= build-check
MESON ?= meson
PYTHON ?= /usr/bin/python3

.PHONY: format-check all deps build run demo test unit system check bench clean format fuzz valgrind install \
	install-systemd test-deploy image

all: build

deps:
	@./scripts/deps.sh

$(BUILD)/build.ninja:
	@./scripts/deps.sh --quiet
	$(MESON) setup $(BUILD) --buildtype=debugoptimized

build: $(BUILD)/build.ninja
	$(MESON) compile -C $(BUILD)

# Serves the API on 127.0.0.1:8000 (LISTEN=host:port to change); Ctrl-C stops it cleanly.
LISTEN ?= 127.0.0.1:8000
run: build
	$(BUILD)/lm-sandbox serve --listen $(LISTEN) --state-dir $(CURDIR)/$(BUILD)/state

demo: build
	./scripts/demo.sh $(BUILD)/lm-sandbox

test: build
	./scripts/test.sh $(BUILD)

check:
	@./scripts/deps.sh --quiet
	test -f $(CHECK_BUILD)/build.ninja || CC=clang $(MESON) setup $(CHECK_BUILD) --buildtype=debug
	$(MESON) configure $(CHECK_BUILD) -Db_sanitize=address,undefined -Db_lundef=false -Dprobe=false -Dstatic_cli=false
	$(MESON) compile -C $(CHECK_BUILD)
	LMS_SANITIZED=1 ./scripts/test.sh $(CHECK_BUILD)

bench: build
	$(PYTHON) bench/bench.py --bin $(BUILD)/lm-sandbox --out bench/RESULTS.md
	$(PYTHON) bench/bench_server.py --serve-bin $(BUILD)/lm-sandbox-serve --stream-rounds 40 --append bench/RESULTS.md
	$(PYTHON) bench/bench_agent.py --serve-bin $(BUILD)/lm-sandbox-serve --append bench/RESULTS.md
	$(PYTHON) bench/bench_network.py --bin $(BUILD)/lm-sandbox --append bench/RESULTS.md
	$(PYTHON) bench/bench_images.py --serve-bin $(BUILD)/lm-sandbox-serve --append bench/RESULTS.md

format:
	clang-format -i $$(git ls-files 'src/*.c' 'src/*.h' 'tests/*.c' 'bench/*.c')

# CI: the C sources are as clang-format (.clang-format) writes them; ends with `N passed, N failed`.
format-check:
	@./scripts/deps.sh --quiet
	@if clang-format --dry-run --Werror $$(git ls-files 'src/*.c' 'src/*.h' 'tests/*.c' 'bench/*.c'); then \
		echo "1 passed, 0 failed"; else echo "run make format"; echo "0 passed, 1 failed"; exit 1; fi

clean:
	rm -rf $(BUILD) $(CHECK_BUILD) build-fuzz $(VALGRIND_BUILD)

# libFuzzer for every target in tests/fuzz/ (clang), FUZZ_SECONDS each; new inputs go to tests/fuzz/corpus-new/.
# The gateway's sources (src/llm/, not in liblms) are compiled into each target, with libcurl's headers.
FUZZ_SECONDS ?= 60
fuzz:
	@./scripts/deps.sh --quiet
	test -f build-fuzz/build.ninja || CC=clang $(MESON) setup build-fuzz --buildtype=debug \
		-Dc_args=-fsanitize=fuzzer-no-link -Db_sanitize=address,undefined -Db_lundef=false -Dprobe=false \
		-Dstatic_cli=false
	$(MESON) compile -C build-fuzz lms lms-server lms-client
	for t in tests/fuzz/fuzz-*.c; do name=$$(basename $$t .c | sed 's/^fuzz-//'); \
		mkdir -p tests/fuzz/corpus-new/$$name; \
		clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Isrc -Ibuild-fuzz \
			$$(pkg-config --cflags libcurl) $$t \
			build-fuzz/src/liblms-server.a build-fuzz/src/liblms-client.a build-fuzz/src/liblms.a -lseccomp -ljansson \
			-lmicrohttpd -larchive -lcrypto -lcurl -lresolv -lm -ldl -lpthread -o build-fuzz/fuzz-$$name && \
		build-fuzz/fuzz-$$name -max_total_time=$(FUZZ_SECONDS) tests/fuzz/corpus-new/$$name \
			tests/fuzz/corpus/$$name || exit 1; done

# The unit tests, a few sandbox runs and the daemon under valgrind (a dynamically linked build: valgrind cannot see
# into a static glibc).
VALGRIND_BUILD ?= build-valgrind
valgrind:
	@./scripts/deps.sh --quiet
	test -f $(VALGRIND_BUILD)/build.ninja || $(MESON) setup $(VALGRIND_BUILD) --buildtype=debug
	$(MESON) configure $(VALGRIND_BUILD) -Dprobe=false -Dstatic_cli=false
	$(MESON) compile -C $(VALGRIND_BUILD)
	./scripts/valgrind.sh $(VALGRIND_BUILD)

# The binaries (PREFIX/bin), then the systemd unit, its settings directory and a token made once
# (deploy/systemd/lm-sandbox.service). DESTDIR for packaging: then nothing is started or reloaded.
PREFIX ?= /usr/local
SYSTEMD_UNIT_DIR ?= /etc/systemd/system
install: build
	install -D -m 0755 $(BUILD)/lm-sandbox $(DESTDIR)$(PREFIX)/bin/lm-sandbox
	install -D -m 0755 $(BUILD)/lm-sandbox-serve $(DESTDIR)$(PREFIX)/bin/lm-sandbox-serve
	install -D -m 0755 $(BUILD)/lm-sandbox-client $(DESTDIR)$(PREFIX)/bin/lm-sandbox-client

install-systemd: install
	sed 's|/usr/local/|$(PREFIX)/|g' deploy/systemd/lm-sandbox.service > $(BUILD)/lm-sandbox.service
	install -D -m 0644 $(BUILD)/lm-sandbox.service $(DESTDIR)$(SYSTEMD_UNIT_DIR)/lm-sandbox.service
	install -D -m 0644 docs/deploy.md $(DESTDIR)$(PREFIX)/share/doc/lm-sandbox/deploy.md
	install -d -m 0700 $(DESTDIR)/etc/lm-sandbox
	test -e $(DESTDIR)/etc/lm-sandbox/token || (umask 077 && head -c 32 /dev/urandom | base64 > $(DESTDIR)/etc/lm-sandbox/token)
	if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload && \
		echo "installed: systemctl enable --now lm-sandbox; the token is in /etc/lm-sandbox/token"; fi

# The container image (deploy/Dockerfile); BASE=... to build on another Debian 12 image.
BASE ?= debian:bookworm-slim
image:
	docker build -f deploy/Dockerfile --build-arg BASE=$(BASE) -t lm-sandbox:latest .

# The deployment tests (tests/deploy/): Docker image, Compose, Kubernetes manifests, yamllint, shellcheck.
# Installs what is missing and starts dockerd when none runs; ends with `N passed, N failed`.
test-deploy:
	./scripts/test-deploy.sh

# A thin wrapper over meson for people's habits: make, make run, make test, make check, make bench.
BUILD ?= build
CHECK_BUILD ?= build-check
MESON ?= meson
PYTHON ?= /usr/bin/python3

.PHONY: all deps build run test unit system check bench clean format

all: build

deps:
	@./scripts/deps.sh

$(BUILD)/build.ninja:
	@./scripts/deps.sh --quiet
	$(MESON) setup $(BUILD) --buildtype=debugoptimized

build: $(BUILD)/build.ninja
	$(MESON) compile -C $(BUILD)

run: build
	./scripts/demo.sh $(BUILD)/lm-sandbox

test: build
	./scripts/test.sh $(BUILD)

check:
	@./scripts/deps.sh --quiet
	test -f $(CHECK_BUILD)/build.ninja || CC=clang $(MESON) setup $(CHECK_BUILD) --buildtype=debug \
		-Db_sanitize=address,undefined -Db_lundef=false -Dprobe=false -Dstatic_cli=false
	$(MESON) compile -C $(CHECK_BUILD)
	./scripts/test.sh $(CHECK_BUILD)

bench: build
	$(PYTHON) bench/bench.py --bin $(BUILD)/lm-sandbox --out bench/RESULTS.md

format:
	clang-format -i $$(git ls-files 'src/*.c' 'src/*.h' 'tests/*.c')

clean:
	rm -rf $(BUILD) $(CHECK_BUILD)

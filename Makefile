# Thin wrapper over CMake: the targets a newcomer expects.
PREFIX ?= /usr/local
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
# The test suites mostly wait on the processes they drive (servers, clients, etcd, Pebble):
# twice as many at a time as there are cores keeps the cores busy. Files that time gaps or
# race signals run alone whatever this is (RUN_SERIAL in CMakeLists.txt).
TEST_JOBS ?= $(shell echo $$(( $(JOBS) * 2 )))
CMAKE ?= cmake

.PHONY: all deps deps-test build check check-plain check-asan fuzz fuzz-smoke demo install clean format valgrind

all: build

# What building and the demo need; deps-test adds what the tests need.
deps:
	@./scripts/install-deps --build

deps-test:
	@./scripts/install-deps

build: deps
	$(CMAKE) -S . -B build -DCMAKE_INSTALL_PREFIX=$(PREFIX) >/dev/null
	$(CMAKE) --build build -j $(JOBS)

# The whole suite, then again under AddressSanitizer + UBSan, then a short fuzz smoke run.
check: check-plain check-asan fuzz-smoke

check-plain: deps-test build
	cd build && ctest --output-on-failure -j $(TEST_JOBS)

check-asan: deps-test
	$(CMAKE) -S . -B build-asan -DCB_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
	$(CMAKE) --build build-asan -j $(JOBS)
	cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j $(TEST_JOBS)

fuzz: deps-test
	CC=clang $(CMAKE) -S . -B build-fuzz -DCB_FUZZ=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
	$(CMAKE) --build build-fuzz -j $(JOBS)

fuzz-smoke:
	@if command -v clang >/dev/null 2>&1; then \
	  $(MAKE) --no-print-directory fuzz && cd build-fuzz && ctest --output-on-failure -j $(JOBS) -R '^fuzz\.'; \
	else echo "clang not found: skipping fuzz smoke run"; fi

valgrind: deps-test build
	cd build && CERTBIND_VALGRIND=1 ctest --output-on-failure -L '^(cli|e2e)$$'

demo: build
	./scripts/demo

install: build
	$(CMAKE) --install build --prefix $(PREFIX)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-asan build-fuzz

/* Shared helpers for the libtessera C tests. Each test is a program that exits 0 when every
 * expectation holds; it talks to the real agent (with the marketplace emulator behind it) whose
 * socket the Rust harness passes in TESSERA_SOCKET. Product "foocad" holds an imported License
 * (features "solver" with 2 seats and "mesher", expiring at 1900000000) whose string form is in
 * TESSERA_TEST_LICENSE; TESSERA_TEST_CODE is an authorization code issued and accepted on the
 * emulator, not yet activated. */
#ifndef TESSERA_TEST_COMMON_H
#define TESSERA_TEST_COMMON_H

#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* nanosleep */
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tessera.h"

#define EXPECT(cond)                                                                  \
  do {                                                                                \
    if (!(cond)) {                                                                    \
      fprintf(stderr, "%s:%d: expectation failed: %s\n", __FILE__, __LINE__, #cond); \
      exit(1);                                                                        \
    }                                                                                 \
  } while (0)

#define EXPECT_RESULT(call, expected)                                                   \
  do {                                                                                  \
    tessera_result got_ = (call);                                                       \
    if (got_ != (expected)) {                                                           \
      fprintf(stderr, "%s:%d: %s returned %u, expected %u (%s)\n", __FILE__, __LINE__, \
              #call, (unsigned)got_, (unsigned)(expected), #expected);                  \
      exit(1);                                                                          \
    }                                                                                   \
  } while (0)

/* Sleeps for `ms` milliseconds; used only between polls of a condition with a deadline. */
static inline void test_pause_ms(long ms) {
  struct timespec ts;
  ts.tv_sec = ms / 1000;
  ts.tv_nsec = (ms % 1000) * 1000000L;
  nanosleep(&ts, NULL);
}

/* Polls `cond` every 5 ms for up to 10 s (real I/O with the agent is involved). */
#define WAIT_UNTIL(cond)                                                             \
  do {                                                                               \
    int waited_ = 0;                                                                 \
    while (!(cond)) {                                                                \
      if (waited_ >= 2000) {                                                         \
        fprintf(stderr, "%s:%d: timed out waiting for %s\n", __FILE__, __LINE__, #cond); \
        exit(1);                                                                     \
      }                                                                              \
      test_pause_ms(5);                                                              \
      waited_++;                                                                     \
    }                                                                                \
  } while (0)

/* The harness's value for `name`; exits if it is missing. */
static inline const char *test_env(const char *name) {
  const char *value = getenv(name);
  if (value == NULL || value[0] == '\0') {
    fprintf(stderr, "%s is not set: run this program from the Rust harness\n", name);
    exit(1);
  }
  return value;
}

/* Defined in double_include.c, which includes tessera.h in a second translation unit. */
unsigned tessera_test_second_unit(void);

#endif

/* A tiny check harness for the C API's tests: C11 and vtime.h only. Every
 * check runs (a failure does not stop the program), prints what failed with
 * the library's last error message, and harness_finish() makes the exit
 * status nonzero if any check failed. */
#ifndef VTIME_TESTS_CAPI_HARNESS_H_
#define VTIME_TESTS_CAPI_HARNESS_H_

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "vtime/vtime.h"

static int harness_checks;
static int harness_failed;

static inline void harness_fail(const char *file, int line, const char *what) {
  ++harness_failed;
  fprintf(stderr, "%s:%d: FAILED: %s\n", file, line, what);
}

static inline void harness_check(int ok, const char *what, const char *file, int line) {
  ++harness_checks;
  if (!ok) harness_fail(file, line, what);
}

static inline void harness_check_u64(uint64_t have, uint64_t want, const char *what,
                                     const char *file, int line) {
  ++harness_checks;
  if (have != want) {
    harness_fail(file, line, what);
    fprintf(stderr, "    have %" PRIu64 " (0x%" PRIx64 "), want %" PRIu64 " (0x%" PRIx64 ")\n",
            have, have, want, want);
  }
}

/* The function a call expression names: "vtime_x(a, b)" -> "vtime_x". */
static inline size_t harness_function_name(const char *call, char *name, size_t capacity) {
  size_t n = 0;
  while (call[n] != '\0' && call[n] != '(' && call[n] != ' ' && n + 1 < capacity) {
    name[n] = call[n];
    ++n;
  }
  name[n] = '\0';
  return n;
}

/* Checks that a call returned `want`; for a failure, also that the thread's
 * message was written by this call: it starts with the function's name. */
static inline void harness_check_status(vtime_status have, vtime_status want, const char *call,
                                        const char *file, int line) {
  ++harness_checks;
  if (have != want) {
    harness_fail(file, line, call);
    fprintf(stderr, "    returned %d (%s), want %d (%s); last error: %s\n", (int)have,
            vtime_status_name(have), (int)want, vtime_status_name(want), vtime_last_error());
    return;
  }
  if (want != VTIME_OK) {
    char name[64];
    const size_t n = harness_function_name(call, name, sizeof name);
    const char *message = vtime_last_error();
    if (strncmp(message, name, n) != 0 || strncmp(message + n, ": ", 2) != 0 ||
        strlen(message) <= n + 2) {
      harness_fail(file, line, call);
      fprintf(stderr, "    the message \"%s\" is not this call's (\"%s: ...\")\n", message, name);
    }
  }
}

#define CHECK(cond) harness_check((cond) ? 1 : 0, #cond, __FILE__, __LINE__)
#define CHECK_EQ(have, want) \
  harness_check_u64((uint64_t)(have), (uint64_t)(want), #have " == " #want, __FILE__, __LINE__)
#define CHECK_STATUS(call, want) harness_check_status((call), (want), #call, __FILE__, __LINE__)
#define CHECK_OK(call) CHECK_STATUS(call, VTIME_OK)
/* The message of the last failure on this thread contains `text`. */
#define CHECK_MESSAGE_HAS(text) CHECK(strstr(vtime_last_error(), (text)) != NULL)

static inline int harness_finish(const char *suite) {
  if (harness_failed != 0) {
    fprintf(stderr, "%s: %d of %d checks FAILED\n", suite, harness_failed, harness_checks);
    return 1;
  }
  printf("%s: all %d checks passed\n", suite, harness_checks);
  return 0;
}

#endif /* VTIME_TESTS_CAPI_HARNESS_H_ */

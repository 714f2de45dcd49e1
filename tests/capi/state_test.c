/* Saved guest time through the C API: building a state, validating it, its
 * encoding and the buffer rules, decoding (and refusing every truncation and
 * corruption), and the JSON view. */
#include <stdlib.h>

#include "harness.h"

#define FREQ 62500000u

/* A valid state with two vCPUs: one plain with PV time, one nested. */
static vtime_state *sample_state(void) {
  vtime_state *state = NULL;
  CHECK_OK(vtime_state_create(&state));
  vtime_state_vm vm;
  CHECK_OK(vtime_state_get_vm(state, &vm));
  vm.counter_frequency_hz = FREQ;
  vm.offset_api = VTIME_OFFSET_API_VM_OFFSET;
  vm.virtual_offset = 1000;
  vm.physical_offset = 1000;
  vm.pause.host_counter = 1000000;
  vm.pause.wall_clock_ns = 1700000000000000000;
  CHECK_OK(vtime_state_set_vm(state, &vm));
  CHECK_OK(vtime_state_set_vcpu_count(state, 2));
  vtime_state_vcpu v;
  memset(&v, 0, sizeof v);
  v.timer_ctl[VTIME_TIMER_EL1_VIRTUAL] = VTIME_CTL_ENABLE;
  v.timer_cval[VTIME_TIMER_EL1_VIRTUAL] = 999500;
  v.timer_ctl[VTIME_TIMER_EL1_PHYSICAL] = VTIME_CTL_IMASK;
  v.timer_cval[VTIME_TIMER_EL1_PHYSICAL] = 12;
  v.cntkctl_el1 = 3;
  v.flags = VTIME_STATE_VCPU_PVTIME;
  v.pvtime_ipa = 0x90000000;
  v.pvtime_stolen_ns = 4242;
  CHECK_OK(vtime_state_set_vcpu(state, 0, &v));
  memset(&v, 0, sizeof v);
  v.flags = VTIME_STATE_VCPU_NESTED;
  v.timer_ctl[VTIME_TIMER_EL2_PHYSICAL] = VTIME_CTL_ENABLE;
  v.timer_cval[VTIME_TIMER_EL2_PHYSICAL] = 0xfedcba9876543210u;
  v.cnthctl_el2 = 0x803;
  v.cntvoff_el2 = 55;
  CHECK_OK(vtime_state_set_vcpu(state, 1, &v));
  CHECK_OK(vtime_state_validate(state));
  return state;
}

/* The encoding of a state, in a malloc'd buffer the caller frees. */
static uint8_t *encode(const vtime_state *state, size_t *size) {
  *size = 0;
  CHECK_STATUS(vtime_state_encode(state, NULL, size), VTIME_ERR_BUFFER_TOO_SMALL);
  uint8_t *bytes = malloc(*size);
  CHECK(bytes != NULL);
  CHECK_OK(vtime_state_encode(state, bytes, size));
  return bytes;
}

static int same_state(const vtime_state *a, const vtime_state *b) {
  vtime_state_vm va, vb;
  size_t na = 0, nb = 0;
  if (vtime_state_get_vm(a, &va) != VTIME_OK || vtime_state_get_vm(b, &vb) != VTIME_OK) return 0;
  if (memcmp(&va, &vb, sizeof va) != 0) return 0;
  if (vtime_state_vcpu_count(a, &na) != VTIME_OK || vtime_state_vcpu_count(b, &nb) != VTIME_OK ||
      na != nb) {
    return 0;
  }
  for (size_t i = 0; i < na; ++i) {
    vtime_state_vcpu ca, cb;
    if (vtime_state_get_vcpu(a, i, &ca) != VTIME_OK || vtime_state_get_vcpu(b, i, &cb) != VTIME_OK)
      return 0;
    if (memcmp(&ca, &cb, sizeof ca) != 0) return 0;
  }
  return 1;
}

static void test_fresh_state(void) {
  vtime_state *state = (vtime_state *)(void *)&state;
  CHECK_STATUS(vtime_state_create(NULL), VTIME_ERR_INVALID_ARGUMENT);
  CHECK_OK(vtime_state_create(&state));
  vtime_state_vm vm;
  memset(&vm, 0xff, sizeof vm);
  CHECK_OK(vtime_state_get_vm(state, &vm));
  CHECK_EQ(vm.format_version, 1);
  CHECK_EQ(vm.counter_frequency_hz, 0);
  CHECK_EQ(vm.offset_api, VTIME_OFFSET_API_NONE);
  size_t n = 9;
  CHECK_OK(vtime_state_vcpu_count(state, &n));
  CHECK_EQ(n, 0);
  /* Without a counter frequency it does not validate, nor encode. */
  CHECK_STATUS(vtime_state_validate(state), VTIME_ERR_MALFORMED);
  CHECK_MESSAGE_HAS("frequency");
  size_t size = 0;
  CHECK_STATUS(vtime_state_encode(state, NULL, &size), VTIME_ERR_MALFORMED);
  CHECK_EQ(size, 0);
  vtime_state_destroy(state);
}

static void test_fields_round_trip(void) {
  vtime_state *state = sample_state();
  vtime_state_vcpu v;
  CHECK_OK(vtime_state_get_vcpu(state, 1, &v));
  CHECK_EQ(v.flags, VTIME_STATE_VCPU_NESTED);
  CHECK_EQ(v.timer_cval[VTIME_TIMER_EL2_PHYSICAL], 0xfedcba9876543210u);
  CHECK_EQ(v.cntvoff_el2, 55);
  CHECK_OK(vtime_state_get_vcpu(state, 0, &v));
  CHECK_EQ(v.pvtime_stolen_ns, 4242);
  CHECK_EQ(v.pvtime_ipa, 0x90000000);
  /* Shrinking and growing: new vCPUs are zero. */
  CHECK_OK(vtime_state_set_vcpu_count(state, 1));
  CHECK_OK(vtime_state_set_vcpu_count(state, 3));
  CHECK_OK(vtime_state_get_vcpu(state, 2, &v));
  CHECK_EQ(v.flags, 0);
  CHECK_EQ(v.timer_cval[0], 0);
  CHECK_OK(vtime_state_set_vcpu_count(state, VTIME_STATE_MAX_VCPUS));
  CHECK_OK(vtime_state_validate(state));

  /* Refusals of the accessors. */
  CHECK_STATUS(vtime_state_set_vcpu_count(state, VTIME_STATE_MAX_VCPUS + 1),
               VTIME_ERR_OUT_OF_RANGE);
  CHECK_MESSAGE_HAS("513");
  CHECK_STATUS(vtime_state_set_vcpu_count(state, (size_t)-1), VTIME_ERR_OUT_OF_RANGE);
  size_t n = 0;
  CHECK_OK(vtime_state_vcpu_count(state, &n));
  CHECK_EQ(n, VTIME_STATE_MAX_VCPUS);
  CHECK_STATUS(vtime_state_get_vcpu(state, VTIME_STATE_MAX_VCPUS, &v), VTIME_ERR_OUT_OF_RANGE);
  CHECK_STATUS(vtime_state_set_vcpu(state, VTIME_STATE_MAX_VCPUS, &v), VTIME_ERR_OUT_OF_RANGE);
  CHECK_STATUS(vtime_state_get_vcpu(state, 0, NULL), VTIME_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(vtime_state_set_vcpu(state, 0, NULL), VTIME_ERR_INVALID_ARGUMENT);
  v.flags = 1u << 2;
  CHECK_STATUS(vtime_state_set_vcpu(state, 0, &v), VTIME_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(vtime_state_vcpu_count(state, NULL), VTIME_ERR_INVALID_ARGUMENT);
  vtime_state_vm vm;
  CHECK_OK(vtime_state_get_vm(state, &vm));
  vm.offset_api = 3;
  CHECK_STATUS(vtime_state_set_vm(state, &vm), VTIME_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(vtime_state_set_vm(state, NULL), VTIME_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(vtime_state_get_vm(state, NULL), VTIME_ERR_INVALID_ARGUMENT);
  vtime_state_destroy(state);
}

static void test_validation(void) {
  vtime_state *state = sample_state();
  vtime_state_vcpu v;
  vtime_state_vm vm;

  /* ISTATUS is derived, never saved. */
  CHECK_OK(vtime_state_get_vcpu(state, 0, &v));
  v.timer_ctl[VTIME_TIMER_EL1_VIRTUAL] |= VTIME_CTL_ISTATUS;
  CHECK_OK(vtime_state_set_vcpu(state, 0, &v));
  CHECK_STATUS(vtime_state_validate(state), VTIME_ERR_MALFORMED);
  CHECK_MESSAGE_HAS("vCPU 0");
  size_t size = 4096;
  uint8_t buffer[4096];
  CHECK_STATUS(vtime_state_encode(state, buffer, &size), VTIME_ERR_MALFORMED);
  CHECK_EQ(size, 4096);
  v.timer_ctl[VTIME_TIMER_EL1_VIRTUAL] &= ~(uint64_t)VTIME_CTL_ISTATUS;
  /* A misaligned PV time record. */
  v.pvtime_ipa = 0x90000008;
  CHECK_OK(vtime_state_set_vcpu(state, 0, &v));
  CHECK_STATUS(vtime_state_validate(state), VTIME_ERR_MALFORMED);
  CHECK_MESSAGE_HAS("aligned");
  v.pvtime_ipa = 0x90000000;
  CHECK_OK(vtime_state_set_vcpu(state, 0, &v));
  /* EL2 state on a vCPU that is not nested. */
  CHECK_OK(vtime_state_get_vcpu(state, 1, &v));
  v.flags = 0;
  CHECK_OK(vtime_state_set_vcpu(state, 1, &v));
  CHECK_STATUS(vtime_state_validate(state), VTIME_ERR_MALFORMED);
  CHECK_MESSAGE_HAS("vCPU 1");
  v.flags = VTIME_STATE_VCPU_NESTED;
  CHECK_OK(vtime_state_set_vcpu(state, 1, &v));
  CHECK_OK(vtime_state_validate(state));
  /* A format version newer than this library's is unsupported; 0 is
   * malformed. */
  CHECK_OK(vtime_state_get_vm(state, &vm));
  vm.format_version = 2;
  CHECK_OK(vtime_state_set_vm(state, &vm));
  CHECK_STATUS(vtime_state_validate(state), VTIME_ERR_UNSUPPORTED);
  CHECK_MESSAGE_HAS("newer");
  vm.format_version = 0;
  CHECK_OK(vtime_state_set_vm(state, &vm));
  CHECK_STATUS(vtime_state_validate(state), VTIME_ERR_MALFORMED);
  vtime_state_destroy(state);
}

static void test_encode_buffer_rules(void) {
  vtime_state *state = sample_state();
  /* Version 1: 24-byte header, five VM records (8 + 8, 8 + 4, 8 + 8, 8 + 8,
   * 8 + 16), two vCPU records of 8 + 120, 4-byte CRC. */
  const size_t expected = 24 + 16 + 12 + 16 + 16 + 24 + 2 * 128 + 4;
  size_t size = 0;
  CHECK_STATUS(vtime_state_encode(state, NULL, &size), VTIME_ERR_BUFFER_TOO_SMALL);
  CHECK_EQ(size, expected);
  CHECK_MESSAGE_HAS("are needed");

  /* One byte short: refused, the size reported, the buffer untouched. */
  uint8_t buffer[1024];
  memset(buffer, 0x5a, sizeof buffer);
  size = expected - 1;
  CHECK_STATUS(vtime_state_encode(state, buffer, &size), VTIME_ERR_BUFFER_TOO_SMALL);
  CHECK_EQ(size, expected);
  int untouched = 1;
  for (size_t i = 0; i < sizeof buffer; ++i) untouched &= buffer[i] == 0x5a;
  CHECK(untouched);
  /* Exactly enough, and more than enough: the same bytes, *size exact. */
  size = expected;
  CHECK_OK(vtime_state_encode(state, buffer, &size));
  CHECK_EQ(size, expected);
  CHECK(memcmp(buffer, "VTSTATE", 8) == 0);
  CHECK_EQ(buffer[expected], 0x5a);
  uint8_t bigger[1024];
  size = sizeof bigger;
  CHECK_OK(vtime_state_encode(state, bigger, &size));
  CHECK_EQ(size, expected);
  CHECK(memcmp(buffer, bigger, expected) == 0);

  CHECK_STATUS(vtime_state_encode(state, buffer, NULL), VTIME_ERR_INVALID_ARGUMENT);
  CHECK_MESSAGE_HAS("size is NULL");
  size = 10;
  CHECK_STATUS(vtime_state_encode(state, NULL, &size), VTIME_ERR_INVALID_ARGUMENT);
  CHECK_EQ(size, 10);
  vtime_state_destroy(state);
}

static void test_decode(void) {
  vtime_state *state = sample_state();
  size_t size = 0;
  uint8_t *bytes = encode(state, &size);

  /* Round trip, and decoding the same bytes twice gives the same state. */
  vtime_state *decoded = NULL;
  CHECK_OK(vtime_state_decode(bytes, size, &decoded));
  CHECK(same_state(state, decoded));
  vtime_state *again = NULL;
  CHECK_OK(vtime_state_decode(bytes, size, &again));
  CHECK(same_state(decoded, again));
  size_t resize = 0;
  uint8_t *reencoded = encode(decoded, &resize);
  CHECK_EQ(resize, size);
  CHECK(memcmp(reencoded, bytes, size) == 0);
  free(reencoded);
  vtime_state_destroy(again);
  vtime_state_destroy(decoded);

  /* Every truncation is refused. */
  int all_refused = 1;
  for (size_t n = 0; n < size; ++n) {
    vtime_state *out = (vtime_state *)(void *)&out;
    const vtime_status s = vtime_state_decode(bytes, n, &out);
    if (s != VTIME_ERR_MALFORMED || out != NULL) {
      all_refused = 0;
      fprintf(stderr, "    a %zu-byte prefix: %s\n", n, vtime_status_name(s));
    }
  }
  CHECK(all_refused);
  /* Trailing bytes are refused. */
  uint8_t *longer = malloc(size + 1);
  CHECK(longer != NULL);
  memcpy(longer, bytes, size);
  longer[size] = 0;
  CHECK_STATUS(vtime_state_decode(longer, size + 1, &decoded), VTIME_ERR_MALFORMED);
  CHECK(decoded == NULL);
  free(longer);

  /* Every single-bit corruption is refused (the CRC-32 covers all of it),
   * and nothing is handed out. */
  int all_corruptions_refused = 1;
  for (size_t at = 0; at < size; ++at) {
    for (int bit = 0; bit < 8; ++bit) {
      bytes[at] ^= (uint8_t)(1u << bit);
      vtime_state *out = (vtime_state *)(void *)&out;
      const vtime_status s = vtime_state_decode(bytes, size, &out);
      if ((s != VTIME_ERR_MALFORMED && s != VTIME_ERR_UNSUPPORTED) || out != NULL) {
        all_corruptions_refused = 0;
        fprintf(stderr, "    bit %d of byte %zu: %s\n", bit, at, vtime_status_name(s));
      }
      bytes[at] ^= (uint8_t)(1u << bit);
    }
  }
  CHECK(all_corruptions_refused);
  /* The checksum names itself. */
  bytes[size - 1] ^= 1;
  CHECK_STATUS(vtime_state_decode(bytes, size, &decoded), VTIME_ERR_MALFORMED);
  bytes[size - 1] ^= 1;

  /* Pointers. */
  CHECK_STATUS(vtime_state_decode(bytes, size, NULL), VTIME_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(vtime_state_decode(NULL, size, &decoded), VTIME_ERR_INVALID_ARGUMENT);
  CHECK(decoded == NULL);
  CHECK_STATUS(vtime_state_decode(NULL, 0, &decoded), VTIME_ERR_MALFORMED);
  CHECK(decoded == NULL);
  free(bytes);
  vtime_state_destroy(state);
}

static void test_decode_refuses_a_newer_format(void) {
  /* A state written for format version 2 (by hand: this library writes only
   * 1) with a correct checksum is UNSUPPORTED, not MALFORMED. The CRC-32 is
   * zlib's, computed here bit by bit. */
  vtime_state *state = sample_state();
  size_t size = 0;
  uint8_t *bytes = encode(state, &size);
  bytes[8] = 2;
  uint32_t crc = 0xffffffffu;
  for (size_t i = 0; i + 4 < size; ++i) {
    crc ^= bytes[i];
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
  }
  crc ^= 0xffffffffu;
  for (int k = 0; k < 4; ++k) bytes[size - 4 + (size_t)k] = (uint8_t)(crc >> (8 * k));
  vtime_state *decoded = NULL;
  CHECK_STATUS(vtime_state_decode(bytes, size, &decoded), VTIME_ERR_UNSUPPORTED);
  CHECK_MESSAGE_HAS("upgrade");
  CHECK(decoded == NULL);
  free(bytes);
  vtime_state_destroy(state);
}

static void test_json(void) {
  vtime_state *state = sample_state();
  size_t size = 0;
  CHECK_STATUS(vtime_state_to_json(state, NULL, &size), VTIME_ERR_BUFFER_TOO_SMALL);
  CHECK(size > 100);
  char *text = malloc(size);
  CHECK(text != NULL);
  const size_t needed = size;
  /* One byte short: no room for the NUL. */
  size = needed - 1;
  memset(text, 'x', needed);
  CHECK_STATUS(vtime_state_to_json(state, text, &size), VTIME_ERR_BUFFER_TOO_SMALL);
  CHECK_EQ(size, needed);
  CHECK_EQ(text[0], 'x');
  CHECK_OK(vtime_state_to_json(state, text, &size));
  CHECK_EQ(size, needed);
  CHECK_EQ(strlen(text), needed - 1);
  CHECK(text[0] == '{');
  CHECK(strstr(text, "\"counter_frequency_hz\": 62500000") != NULL);
  CHECK(strstr(text, "\"stolen_ns\": 4242") != NULL);
  CHECK(strstr(text, "\"derived\"") != NULL);
  free(text);
  /* Any state has a view, valid or not. */
  vtime_state *empty = NULL;
  CHECK_OK(vtime_state_create(&empty));
  char small[4096];
  size = sizeof small;
  CHECK_OK(vtime_state_to_json(empty, small, &size));
  CHECK(strstr(small, "\"vcpus\": []") != NULL);
  CHECK_STATUS(vtime_state_to_json(empty, small, NULL), VTIME_ERR_INVALID_ARGUMENT);
  size = 1;
  CHECK_STATUS(vtime_state_to_json(empty, NULL, &size), VTIME_ERR_INVALID_ARGUMENT);
  vtime_state_destroy(empty);
  vtime_state_destroy(state);
}

static void test_bad_handles(void) {
  vtime_clock *clock = NULL;
  CHECK_OK(vtime_clock_create(FREQ, 0, &clock));
  vtime_vcpu *vcpu = NULL;
  CHECK_OK(vtime_vcpu_create(0, &vcpu));
  uint64_t not_a_handle[16] = {0};
  vtime_state *bad[] = {NULL, (vtime_state *)(void *)clock, (vtime_state *)(void *)vcpu,
                        (vtime_state *)(void *)not_a_handle};
  for (size_t i = 0; i < 4; ++i) {
    vtime_state *s = bad[i];
    vtime_state_vm vm;
    vtime_state_vcpu v;
    size_t n = 0;
    uint8_t buffer[8];
    char text[8];
    memset(&vm, 0, sizeof vm);
    memset(&v, 0, sizeof v);
    CHECK_STATUS(vtime_state_get_vm(s, &vm), VTIME_ERR_BAD_HANDLE);
    CHECK_MESSAGE_HAS("state is NULL or not a live handle");
    CHECK_STATUS(vtime_state_set_vm(s, &vm), VTIME_ERR_BAD_HANDLE);
    CHECK_STATUS(vtime_state_vcpu_count(s, &n), VTIME_ERR_BAD_HANDLE);
    CHECK_STATUS(vtime_state_set_vcpu_count(s, 1), VTIME_ERR_BAD_HANDLE);
    CHECK_STATUS(vtime_state_get_vcpu(s, 0, &v), VTIME_ERR_BAD_HANDLE);
    CHECK_STATUS(vtime_state_set_vcpu(s, 0, &v), VTIME_ERR_BAD_HANDLE);
    CHECK_STATUS(vtime_state_validate(s), VTIME_ERR_BAD_HANDLE);
    n = sizeof buffer;
    CHECK_STATUS(vtime_state_encode(s, buffer, &n), VTIME_ERR_BAD_HANDLE);
    n = sizeof text;
    CHECK_STATUS(vtime_state_to_json(s, text, &n), VTIME_ERR_BAD_HANDLE);
    vtime_state_destroy(s);
  }
  for (size_t i = 0; i < sizeof not_a_handle / sizeof not_a_handle[0]; ++i) {
    CHECK_EQ(not_a_handle[i], 0);
  }
  CHECK_OK(vtime_vcpu_reset(vcpu));
  vtime_vcpu_destroy(vcpu);
  vtime_clock_destroy(clock);
  vtime_state_destroy(NULL);
}

int main(void) {
  test_fresh_state();
  test_fields_round_trip();
  test_validation();
  test_encode_buffer_rules();
  test_decode();
  test_decode_refuses_a_newer_format();
  test_json();
  test_bad_handles();
  return harness_finish("capi state");
}

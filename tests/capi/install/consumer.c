/* A program built against an installed vtime (tests/capi/install_test.sh):
 * it includes <vtime/vtime.h>, links -lvtime, and checks that the library
 * it runs with is the one it was built for and that it works. */
#include <stdio.h>
#include <vtime/vtime.h>

int main(void) {
  if (vtime_version() >> 16 != VTIME_VERSION_MAJOR) {
    fprintf(stderr, "built for vtime %d.x, running with %s\n", VTIME_VERSION_MAJOR,
            vtime_version_string());
    return 1;
  }
  vtime_state *state = NULL;
  vtime_state_vm vm = {0};
  size_t size = 0;
  if (vtime_state_create(&state) != VTIME_OK) return 1;
  vm.format_version = 1;
  vm.counter_frequency_hz = 62500000;
  vm.offset_api = VTIME_OFFSET_API_VM_OFFSET;
  if (vtime_state_set_vm(state, &vm) != VTIME_OK ||
      vtime_state_encode(state, NULL, &size) != VTIME_ERR_BUFFER_TOO_SMALL) {
    fprintf(stderr, "%s\n", vtime_last_error());
    return 1;
  }
  vtime_state_destroy(state);
  printf("vtime %s: a saved state with no vCPU encodes in %zu bytes\n", vtime_version_string(),
         size);
  return 0;
}

/* A guest whose initialisation fails: the host must report the error and never call it. */
#include "snapvm.h"

static int32_t never(const sv_value *a, uint32_t n, sv_value *r) {
  (void)a, (void)n, (void)r;
  return SV_OK;
}

void guest_main(void) {
  sv_register("Never", SV_VOID, 0, NULL, never);
  sv_init_error(SV_ERR_USER + 1, "badinit: initialisation failed on purpose");
}

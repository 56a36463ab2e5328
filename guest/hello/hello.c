/* The smallest useful guest: Hello(name) -> greeting, and Twice(x) -> 2x. */
#include "snapvm.h"

static char g_greeting[256]; /* results must outlive the function: static, not on the stack */

static int32_t hello(const sv_value *args, uint32_t argc, sv_value *ret) {
  (void)argc;
  int n = sv_snprintf(g_greeting, sizeof g_greeting, "Hello, %s!", args[0].str.ptr);
  if (n >= (int)sizeof g_greeting) return sv_error(SV_ERR_BAD_ARGS, "name too long");
  sv_log(SV_LOG_INFO, g_greeting);
  *ret = sv_string_n(g_greeting, (uint32_t)n);
  return SV_OK;
}

static int32_t twice(const sv_value *args, uint32_t argc, sv_value *ret) {
  (void)argc;
  ret->i64 = args[0].i64 * 2;
  return SV_OK;
}

void guest_main(void) {
  static const sv_type hello_params[] = {SV_STRING};
  static const sv_type twice_params[] = {SV_I64};
  sv_register("Hello", SV_STRING, 1, hello_params, hello);
  sv_register("Twice", SV_I64, 1, twice_params, twice);
}

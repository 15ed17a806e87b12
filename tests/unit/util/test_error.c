/* Tests for util/error: status names and FILE:LINE:COLUMN formatting. */
#include "util/error.h"

#include "common/popk_test.h"

#include <string.h>

static void test_status_str(void)
{
    CU_ASSERT_STRING_EQUAL(popk_status_str(POPK_OK), "ok");
    CU_ASSERT_STRING_EQUAL(popk_status_str(POPK_ERR_DATA), "invalid dataset");
    CU_ASSERT_STRING_EQUAL(popk_status_str((popk_status)12345), "unknown status");
}

static void test_format(void)
{
    popk_error e;
    char buf[600];
    popk_error_clear(&e);
    CU_ASSERT_EQUAL(popk_error_set(&e, POPK_ERR_DATA, "a.csv", 3, 7, "bad %s", "x"), POPK_ERR_DATA);
    CU_ASSERT_STRING_EQUAL(popk_error_format(&e, buf, sizeof buf), "a.csv:3:7: bad x");
    popk_error_set(&e, POPK_ERR_IO, "b.csv", 0, 0, "cannot open");
    CU_ASSERT_STRING_EQUAL(popk_error_format(&e, buf, sizeof buf), "b.csv: cannot open");
    popk_error_set_context(&e, "abc\ndef", 7);
    CU_ASSERT_STRING_EQUAL(e.context, "abc");
    CU_ASSERT_EQUAL(popk_error_set(NULL, POPK_ERR_IO, NULL, 0, 0, "x"), POPK_ERR_IO);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("util", NULL, NULL);
    CU_add_test(s, "status_str", test_status_str);
    CU_add_test(s, "format", test_format);
    return popk_test_run();
}

/* tests/common/popk_test.h — shared helpers for the CUnit suites. */
#ifndef POPK_TEST_H
#define POPK_TEST_H

#include <CUnit/Basic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Run every registered suite verbosely (only the tests named in $POPK_TEST, comma-separated,
 * if it is set); the process exit status is non-zero on any failure. */
static inline int popk_test_run(void)
{
    CU_basic_set_mode(CU_BRM_VERBOSE);
    const char *only = getenv("POPK_TEST");
    if (only && *only) {
        for (CU_pSuite s = CU_get_registry()->pSuite; s; s = s->pNext)
            for (CU_pTest t = s->pTest; t; t = t->pNext) {
                size_t len = strlen(t->pName);
                for (const char *at = strstr(only, t->pName); at; at = strstr(at + 1, t->pName))
                    if ((at == only || at[-1] == ',') && (at[len] == '\0' || at[len] == ',')) {
                        CU_basic_run_test(s, t);
                        break;
                    }
            }
    } else
        CU_basic_run_tests();
    unsigned failed = CU_get_number_of_tests_failed();
    CU_cleanup_registry();
    return failed ? 1 : 0;
}

/* Path of a file in the source tree: $POPK_SOURCE_ROOT/rel (static buffer, not reentrant). */
static inline const char *popk_test_src(const char *rel)
{
    static char buf[4096];
    const char *root = getenv("POPK_SOURCE_ROOT");
    snprintf(buf, sizeof buf, "%s/%s", root ? root : ".", rel);
    return buf;
}

#endif

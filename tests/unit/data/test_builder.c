/* Tests for data/builder: a dataset built in memory equals the same dataset read from text. */
#include <math.h>
#include <string.h>

#include "common/popk_test.h"
#include "data/data.h"

static void test_same_as_parsed(void)
{
    const char *csv = "ID,TIME,DV,AMT,EVID,MDV,CMT,WT\n"
                      "1,0,0,100,1,1,1,70\n1,1,2.5,0,0,0,2,70\n1,2,1.5,0,0,0,2,72\n"
                      "2,0,0,50,1,1,1,60\n2,4,.,0,2,1,2,60\n";
    popk_error err;
    popk_data *p = popk_data_parse("t.csv", csv, strlen(csv), &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    const char *names[] = {"WT"};
    popk_data_builder *b = popk_data_builder_new(1, names, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    for (size_t r = 0; r < p->nrec; r++) {
        double id = 0;
        for (size_t s = 0; s < p->nsub; s++)
            if (r >= p->sub[s].first && r < p->sub[s].first + p->sub[s].n)
                id = p->sub[s].id;
        CU_ASSERT_EQUAL(popk_data_builder_add(b, id, &p->rec[r], &p->cov[0].values[r], &err),
                        POPK_OK);
    }
    popk_data *d = popk_data_builder_finish(b);
    CU_ASSERT_EQUAL(d->nrec, p->nrec);
    CU_ASSERT_EQUAL(d->nsub, p->nsub);
    for (size_t s = 0; s < d->nsub; s++) {
        CU_ASSERT_EQUAL(d->sub[s].id, p->sub[s].id);
        CU_ASSERT_EQUAL(d->sub[s].first, p->sub[s].first);
        CU_ASSERT_EQUAL(d->sub[s].n, p->sub[s].n);
        CU_ASSERT_EQUAL(d->sub[s].nobs, p->sub[s].nobs);
    }
    for (size_t r = 0; r < d->nrec; r++) {
        CU_ASSERT_EQUAL(d->rec[r].time, p->rec[r].time);
        CU_ASSERT_EQUAL(d->rec[r].evid, p->rec[r].evid);
        CU_ASSERT_EQUAL(d->cov[0].values[r], p->cov[0].values[r]);
    }
    CU_ASSERT_EQUAL(popk_data_find_cov(d, "wt"), 0);
    popk_data_free(d);
    popk_data_free(p);
}

static void test_time_order(void)
{
    popk_error err;
    popk_data_builder *b = popk_data_builder_new(0, NULL, &err);
    popk_record r = {0};
    r.time = 5;
    CU_ASSERT_EQUAL(popk_data_builder_add(b, 1, &r, NULL, &err), POPK_OK);
    r.time = 4;
    CU_ASSERT_EQUAL(popk_data_builder_add(b, 1, &r, NULL, &err), POPK_ERR_DATA);
    CU_ASSERT(strstr(err.message, "back in time") != NULL);
    CU_ASSERT_EQUAL(popk_data_builder_add(b, 2, &r, NULL, &err), POPK_OK);
    popk_data_builder_free(b);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("builder", NULL, NULL);
    CU_add_test(s, "same_as_parsed", test_same_as_parsed);
    CU_add_test(s, "time_order", test_time_order);
    return popk_test_run();
}

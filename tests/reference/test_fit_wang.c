/* Gate (a): Wang (2007) at fixed parameters through model files and the prediction engine —
 * FO, FOCE, FOCE-I and Laplace objectives against NONMEM's published values (and the
 * definition for Laplace), the EBEs and per-subject objectives of eta.csv, and the residual
 * columns of tab.csv against NONMEM's own table (refdata README sections 6(i) and 7). */
#include "test_fit.h"

static const struct {
    const char *model, *data;
    popk_method method;
    double ofv;
} wang_cases[] = {
    {"models/wang2007_prop.yaml", "datasets/wang2007.csv", POPK_METHOD_FOCEI, 39.458},
    {"models/wang2007_prop.yaml", "datasets/wang2007.csv", POPK_METHOD_FOCE, 39.207},
    {"models/wang2007_prop.yaml", "datasets/wang2007.csv", POPK_METHOD_FO, 39.213},
    {"models/wang2007_prop.yaml", "datasets/wang2007.csv", POPK_METHOD_LAPLACE, 39.227},
    {"models/wang2007_add.yaml", "datasets/wang2007.csv", POPK_METHOD_FOCEI, -2.059},
    {"models/wang2007_add.yaml", "datasets/wang2007.csv", POPK_METHOD_FOCE, -2.059},
    {"models/wang2007_add.yaml", "datasets/wang2007.csv", POPK_METHOD_FO, 0.026},
    {"models/wang2007_add.yaml", "datasets/wang2007.csv", POPK_METHOD_LAPLACE, -1.936},
    {"models/wang2007_ode.yaml", "tests/reference/data/wang2007_dosed.csv", POPK_METHOD_FOCEI,
     39.458},
    {"models/wang2007_ode.yaml", "tests/reference/data/wang2007_dosed.csv", POPK_METHOD_FOCE,
     39.207},
    {"models/wang2007_ode.yaml", "tests/reference/data/wang2007_dosed.csv", POPK_METHOD_FO,
     39.213},
    {"models/wang2007_ode.yaml", "tests/reference/data/wang2007_dosed.csv",
     POPK_METHOD_LAPLACE, 39.227},
};

static void test_objectives(void)
{
    for (size_t k = 0; k < sizeof wang_cases / sizeof wang_cases[0]; k++) {
        fit_case c;
        CU_ASSERT_FATAL(fit_case_load(&c, wang_cases[k].model, wang_cases[k].data, NULL, NULL,
                                      NULL, 1) == 0);
        popk_estimate_result *r = fit_case_run(&c, wang_cases[k].method, 1, 1);
        CU_ASSERT_FATAL(r != NULL);
        /* NONMEM prints three decimals: agreement to 0.001 is the whole of the reference */
        if (fabs(r->ofv - wang_cases[k].ofv) > 1e-3)
            fprintf(stderr, "%s %s: OFV %.6f, expected %.3f\n", wang_cases[k].model,
                    popk_method_name(wang_cases[k].method), r->ofv, wang_cases[k].ofv);
        CU_ASSERT(fabs(r->ofv - wang_cases[k].ofv) <= 1e-3);
        popk_estimate_result_free(r);
        fit_case_free(&c);
    }
}

static char tmpdir[256];

/* popk fit --evaluate, then eta.csv and tab.csv against NONMEM's table, subject by subject
 * and record by record, to the 5 significant digits NONMEM printed. */
static void check_tables(const char *model, const char *data)
{
    char out[512], path[600];
    snprintf(out, sizeof out, "%s/%s", tmpdir, strrchr(model, '/') + 1);
    char mpath[4096], dpath[4096];
    snprintf(mpath, sizeof mpath, "%s", popk_test_src(model));
    snprintf(dpath, sizeof dpath, "%s", popk_test_src(data));
    const char *args[] = {"fit", mpath, dpath, "--evaluate", "--quiet", "--out", out, NULL};
    snprintf(path, sizeof path, "%s.stderr", out);
    CU_ASSERT_FATAL(run_popk(args, NULL, path) == 0);
    CU_ASSERT(file_size(path) == 0);

    num_table nm, eta, tab;
    CU_ASSERT_FATAL(table_read(&nm, popk_test_src("tests/reference/data/"
                                                  "wang2007_nonmem_prop_focei.tsv"),
                               '\t') == 0);
    snprintf(path, sizeof path, "%s/eta.csv", out);
    CU_ASSERT_FATAL(table_read(&eta, path, ',') == 0);
    snprintf(path, sizeof path, "%s/tab.csv", out);
    CU_ASSERT_FATAL(table_read(&tab, path, ',') == 0);
    CU_ASSERT_EQUAL(eta.nrow, 10);
    for (int s = 0; s < eta.nrow; s++) {
        int row = 2 * s; /* two records per subject in NONMEM's table */
        CU_ASSERT_EQUAL(table_get(&eta, s, "ID"), table_get(&nm, row, "ID"));
        double e = table_get(&nm, row, "ETA1"), o = table_get(&nm, row, "OBJI");
        CU_ASSERT(fabs(table_get(&eta, s, "eta_ke") - e) <= five_digits(e));
        CU_ASSERT(fabs(table_get(&eta, s, "OBJI") - o) <= five_digits(o));
    }
    static const char *cols[][2] = {{"PRED", "PRED"}, {"IPRED", "IPRE"}, {"RES", "RES"},
                                    {"WRES", "WRES"}, {"CWRES", "CWRES"}, {"IWRES", "IWRES"},
                                    {"ETA1", "ETA1"}};
    int row = 0, compared = 0;
    for (int k = 0; k < tab.nrow; k++) {
        if (table_get(&tab, k, "EVID") != 0)
            continue;
        CU_ASSERT_EQUAL(table_get(&tab, k, "ID"), table_get(&nm, row, "ID"));
        CU_ASSERT_EQUAL(table_get(&tab, k, "TIME"), table_get(&nm, row, "TIME"));
        for (size_t c = 0; c < sizeof cols / sizeof cols[0]; c++) {
            double want = table_get(&nm, row, cols[c][1]), got = table_get(&tab, k, cols[c][0]);
            if (!(fabs(got - want) <= five_digits(want)))
                fprintf(stderr, "%s ID %g TIME %g %s: %.6g, NONMEM %.5g\n", model,
                        table_get(&nm, row, "ID"), table_get(&nm, row, "TIME"), cols[c][0],
                        got, want);
            CU_ASSERT(fabs(got - want) <= five_digits(want));
            compared++;
        }
        row++;
    }
    CU_ASSERT_EQUAL(row, nm.nrow);
    CU_ASSERT_EQUAL(compared, 7 * 20);
    table_free(&nm);
    table_free(&eta);
    table_free(&tab);
}

static void test_tables_closed_form(void)
{
    check_tables("models/wang2007_prop.yaml", "datasets/wang2007.csv");
}

static void test_tables_ode(void)
{
    check_tables("models/wang2007_ode.yaml", "tests/reference/data/wang2007_dosed.csv");
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/popk-fit-wang-XXXXXX");
    if (!mkdtemp(tmpdir))
        return 1;
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("fit_wang2007", NULL, NULL);
    CU_add_test(s, "OFV of FO, FOCE, FOCE-I, Laplace (prop, add, ODE) vs NONMEM", test_objectives);
    CU_add_test(s, "eta.csv and tab.csv vs NONMEM's table (closed form)",
                test_tables_closed_form);
    CU_add_test(s, "eta.csv and tab.csv vs NONMEM's table (ODE, dosed data)", test_tables_ode);
    int rc = popk_test_run();
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        rc = 1;
    return rc;
}

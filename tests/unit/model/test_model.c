/* Tests for model/: every bundled model loads and its programs give hand-computed values at
 * the initial estimates; schema features; binding datasets to models. */
#include "model/model.h"
#include "util/dual.h"

#include "common/popk_test.h"

#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Relative agreement to rounding: the programs compute the same formulas as the reference
 * expressions here, possibly in another order. */
#define CLOSE(a, b) CU_ASSERT_DOUBLE_EQUAL((a), (b), 1e-13 * (fabs(b) + 1e-300))

static popk_model *load(const char *rel)
{
    popk_error err;
    popk_model *m = popk_model_load(popk_test_src(rel), &err);
    if (!m) {
        char buf[1024];
        printf("\n  %s\n", popk_error_format(&err, buf, sizeof buf));
    }
    return m;
}

static popk_model *parse(const char *text, popk_error *err)
{
    return popk_model_parse("inline.yaml", text, strlen(text), err);
}

/* An evaluation frame at the initial estimates: thetas and sigmas at init, etas 0. */
typedef struct {
    double *slots, *stack;
} frame;

static frame frame_new(const popk_model *m)
{
    frame f;
    f.slots = calloc((size_t)m->nslots, sizeof *f.slots);
    int ns = 16;
    const popk_prog *progs[3] = {m->prog_pk, m->prog_rhs, m->prog_out};
    for (int i = 0; i < 3; i++)
        if (progs[i] && popk_prog_stack_size(progs[i]) > ns)
            ns = popk_prog_stack_size(progs[i]);
    f.stack = calloc((size_t)ns * (1 + POPK_DUAL_MAX), sizeof *f.stack);
    for (int k = 0; k < m->ntheta; k++)
        f.slots[m->theta_slot + k] = m->theta[k].init;
    for (int k = 0; k < m->nsigma; k++)
        f.slots[m->sigma_slot + k] = m->sigma[k].init;
    return f;
}

static void frame_free(frame *f)
{
    free(f->slots);
    free(f->stack);
}

static int ind(const popk_model *m, const char *name)
{
    for (int i = 0; i < m->nind; i++)
        if (!strcmp(m->ind_name[i], name))
            return m->ind_slot + i;
    CU_FAIL("no such individual variable");
    return 0;
}

static int cov(const popk_model *m, const char *name)
{
    for (int i = 0; i < m->ncov; i++)
        if (!strcmp(m->cov[i].name, name))
            return m->cov[i].slot;
    CU_FAIL("no such covariate");
    return 0;
}

/* ---------------------------------------------------------------------------------------- */

static int count_models(const char *rel, int *failures)
{
    char dirpath[4096];
    snprintf(dirpath, sizeof dirpath, "%s", popk_test_src(rel));
    DIR *dir = opendir(dirpath);
    CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(dir))) {
        size_t len = strlen(de->d_name);
        if (len < 6 || strcmp(de->d_name + len - 5, ".yaml"))
            continue;
        char path[4096 + 256];
        snprintf(path, sizeof path, "%s/%s", dirpath, de->d_name);
        FILE *fh = fopen(path, "r");
        int first = fh ? fgetc(fh) : EOF;
        if (fh)
            fclose(fh);
        if (first != '#') {
            printf("\n  %s does not open with a comment citing its source\n", de->d_name);
            ++*failures;
        }
        popk_error err;
        popk_model *m = popk_model_load(path, &err);
        if (!m) {
            char buf[1024];
            printf("\n  %s\n", popk_error_format(&err, buf, sizeof buf));
            ++*failures;
            continue;
        }
        if (!m->prog_out || (m->kind == POPK_STRUCT_ODE) != (m->prog_rhs != NULL) ||
            (m->nind > 0 && !m->prog_pk) || m->nslots < m->ntheta + m->neta + m->nind) {
            printf("\n  %s: inconsistent programs or frame\n", de->d_name);
            ++*failures;
        }
        popk_model_free(m);
        n++;
    }
    closedir(dir);
    return n;
}

static void test_all_models_load(void)
{
    int failures = 0;
    int n = count_models("models", &failures) + count_models("models/acop", &failures);
    CU_ASSERT(n >= 28);
    CU_ASSERT_EQUAL(failures, 0);
}

static void test_theophylline(void)
{
    popk_model *m = load("models/theophylline.yaml");
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_EQUAL(m->kind, POPK_STRUCT_LINEAR);
    CU_ASSERT_EQUAL(m->lin_ncmt, 1);
    CU_ASSERT_EQUAL(m->lin_depot, 1);
    CU_ASSERT_EQUAL(m->lin_rate_form, 0);
    CU_ASSERT_EQUAL(m->ncmt, 2);
    CU_ASSERT_STRING_EQUAL(m->cmt_name[0], "depot");
    CU_ASSERT_STRING_EQUAL(m->cmt_name[1], "central");
    CU_ASSERT_EQUAL(m->default_dose_cmt, 1);
    CU_ASSERT_EQUAL(m->default_obs_cmt, 2);
    CU_ASSERT_EQUAL(m->ntheta, 3);
    CU_ASSERT_EQUAL(m->neta, 3);
    CU_ASSERT_EQUAL(m->nsigma, 1);
    CU_ASSERT_EQUAL(m->nomega_block, 3);
    CU_ASSERT_EQUAL(m->omega[0], 0.6);
    CU_ASSERT_EQUAL(m->omega[4], 0.3);
    CU_ASSERT_EQUAL(m->omega[8], 0.1);
    CU_ASSERT_EQUAL(m->omega[1], 0.0);
    CU_ASSERT_EQUAL(m->sigma[0].init, 0.7);
    CU_ASSERT_EQUAL(m->sigma[0].lower, 0.0);
    CU_ASSERT_EQUAL(m->out[0].err, POPK_ERRM_ADD);
    CU_ASSERT_EQUAL(m->out[0].sig_a, 0);
    CU_ASSERT_EQUAL(m->out[0].cmt, 2);
    CU_ASSERT_EQUAL(m->lin_slot[POPK_LIN_Q2], -1);
    CU_ASSERT_EQUAL(m->dose[0].f_slot, -1);

    frame f = frame_new(m);
    popk_prog_eval(m->prog_pk, f.slots, f.stack);
    CLOSE(f.slots[ind(m, "ka")], exp(0.45));
    CLOSE(f.slots[ind(m, "cl")], exp(1.0));
    CLOSE(f.slots[ind(m, "v")], exp(3.45));
    CLOSE(f.slots[m->lin_slot[POPK_LIN_KA]], exp(0.45));
    CLOSE(f.slots[m->lin_slot[POPK_LIN_CL]], exp(1.0));
    CLOSE(f.slots[m->lin_slot[POPK_LIN_V]], exp(3.45));
    f.slots[m->amt_slot + 1] = 12.5;
    popk_prog_eval(m->prog_out, f.slots, f.stack);
    CLOSE(f.slots[m->out[0].slot], 12.5 / exp(3.45));

    /* duals: d(ka, cl, v)/d(eta_ka, eta_cl, eta_v) at eta = 0.1, 0.2, 0.3 is diag(ka, cl, v) */
    int nd = 3, w = 1 + nd;
    double *ds = calloc((size_t)m->nslots * (size_t)w, sizeof *ds);
    for (int k = 0; k < m->ntheta; k++)
        ds[(m->theta_slot + k) * w] = m->theta[k].init;
    for (int k = 0; k < 3; k++) {
        ds[(m->eta_slot + k) * w] = 0.1 * (k + 1);
        ds[(m->eta_slot + k) * w + 1 + k] = 1.0;
    }
    popk_prog_eval_dual(m->prog_pk, nd, ds, f.stack);
    const char *names[3] = {"ka", "cl", "v"};
    double base[3] = {0.45, 1.0, 3.45};
    for (int k = 0; k < 3; k++) {
        const double *p = ds + ind(m, names[k]) * w;
        double val = exp(base[k] + 0.1 * (k + 1));
        CLOSE(p[0], val);
        for (int j = 0; j < 3; j++)
            CLOSE(p[1 + j], j == k ? val : 0.0);
    }
    free(ds);
    frame_free(&f);
    popk_model_free(m);
}

static void test_theophylline_ode(void)
{
    popk_model *m = load("models/theophylline_ode.yaml");
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_EQUAL(m->kind, POPK_STRUCT_ODE);
    CU_ASSERT_EQUAL(m->ncmt, 2);
    CU_ASSERT_EQUAL(m->default_dose_cmt, 1);
    CU_ASSERT_EQUAL(m->default_obs_cmt, 2);
    frame f = frame_new(m);
    popk_prog_eval(m->prog_pk, f.slots, f.stack);
    f.slots[m->amt_slot] = 100;
    f.slots[m->amt_slot + 1] = 10;
    popk_prog_eval(m->prog_rhs, f.slots, f.stack);
    double ka = exp(0.45), k = exp(1.0) / exp(3.45);
    CLOSE(f.slots[m->deriv_slot], -ka * 100);
    CLOSE(f.slots[m->deriv_slot + 1], ka * 100 - k * 10);
    frame_free(&f);
    popk_model_free(m);
}

static void test_wang2007(void)
{
    const char *files[2] = {"models/wang2007_prop.yaml", "models/wang2007_add.yaml"};
    for (int i = 0; i < 2; i++) {
        popk_model *m = load(files[i]);
        CU_ASSERT_PTR_NOT_NULL_FATAL(m);
        CU_ASSERT_EQUAL(m->kind, POPK_STRUCT_NONE);
        CU_ASSERT_EQUAL(m->ncmt, 0);
        CU_ASSERT_EQUAL(m->theta[0].init, 0.5);
        CU_ASSERT(m->theta[0].fixed);
        CU_ASSERT_EQUAL(m->omega[0], 0.04);
        CU_ASSERT(m->omega_fixed[0]);
        CU_ASSERT_EQUAL(m->sigma[0].init, sqrt(0.1));
        CU_ASSERT(m->sigma[0].fixed);
        CU_ASSERT_EQUAL(m->out[0].err, i == 0 ? POPK_ERRM_PROP : POPK_ERRM_ADD);
        CU_ASSERT_EQUAL(i == 0 ? m->out[0].sig_b : m->out[0].sig_a, 0);
        frame f = frame_new(m);
        f.slots[m->eta_slot] = -0.2;
        popk_prog_eval(m->prog_pk, f.slots, f.stack);
        double ke = 0.5 * exp(-0.2);
        CLOSE(f.slots[ind(m, "ke")], ke);
        f.slots[m->time_slot] = 1.0;
        popk_prog_eval(m->prog_out, f.slots, f.stack);
        CLOSE(f.slots[m->out[0].slot], 10 * exp(-ke));
        frame_free(&f);
        popk_model_free(m);
    }
    popk_model *m = load("models/wang2007_ode.yaml");
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    frame f = frame_new(m);
    popk_prog_eval(m->prog_pk, f.slots, f.stack);
    f.slots[m->amt_slot] = 7;
    popk_prog_eval(m->prog_rhs, f.slots, f.stack);
    CLOSE(f.slots[m->deriv_slot], -0.5 * 7);
    popk_prog_eval(m->prog_out, f.slots, f.stack);
    CLOSE(f.slots[m->out[0].slot], 7.0);
    frame_free(&f);
    popk_model_free(m);
}

static void test_nmtest(void)
{
    const char *files[2] = {"models/nmtest.yaml", "models/nmtest_ode.yaml"};
    for (int i = 0; i < 2; i++) {
        popk_model *m = load(files[i]);
        CU_ASSERT_PTR_NOT_NULL_FATAL(m);
        CU_ASSERT_EQUAL(m->default_dose_cmt, 1);
        CU_ASSERT_EQUAL(m->default_obs_cmt, 2);
        /* no attributes on the depot: F = 1, no lag */
        CU_ASSERT_EQUAL(m->dose[0].f_slot, -1);
        CU_ASSERT_EQUAL(m->dose[0].alag_slot, -1);
        const popk_dose_attr *d = &m->dose[1];
        CU_ASSERT_FATAL(d->f_slot >= 0 && d->alag_slot >= 0 && d->rate_slot >= 0 &&
                        d->dur_slot >= 0);
        frame f = frame_new(m);
        f.slots[cov(m, "BIOAV")] = 0.412;
        f.slots[cov(m, "LAGT")] = 3.25;
        f.slots[cov(m, "RAT2")] = 7;
        f.slots[cov(m, "DUR2")] = 9;
        f.slots[cov(m, "MODE")] = 1;
        popk_prog_eval(m->prog_pk, f.slots, f.stack);
        CU_ASSERT_EQUAL(f.slots[d->f_slot], 0.412);
        CU_ASSERT_EQUAL(f.slots[d->alag_slot], 3.25);
        CU_ASSERT_EQUAL(f.slots[d->rate_slot], 7);
        CU_ASSERT_EQUAL(f.slots[d->dur_slot], 0);
        f.slots[cov(m, "MODE")] = 2;
        popk_prog_eval(m->prog_pk, f.slots, f.stack);
        CU_ASSERT_EQUAL(f.slots[d->rate_slot], 0);
        CU_ASSERT_EQUAL(f.slots[d->dur_slot], 9);
        f.slots[m->amt_slot + 1] = 3;
        popk_prog_eval(m->prog_out, f.slots, f.stack);
        CLOSE(f.slots[m->out[0].slot], 1000 * 3 / 20.0);
        CU_ASSERT_EQUAL(m->out[0].err, POPK_ERRM_LOG);
        frame_free(&f);
        popk_model_free(m);
    }
}

static void test_acop(void)
{
    popk_model *m = load("models/acop/Oral_2CPT.yaml");
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_EQUAL(m->lin_ncmt, 2);
    CU_ASSERT_EQUAL(m->ncmt, 3);
    CU_ASSERT_STRING_EQUAL(m->cmt_name[2], "peripheral1");
    CU_ASSERT_STRING_EQUAL(m->sigma[0].name, "rsv");
    CU_ASSERT_EQUAL(m->sigma[0].lower, 0);
    CU_ASSERT_EQUAL(m->sigma[0].upper, 1);
    CU_ASSERT_EQUAL(m->sigma[0].init, 0.3);
    CU_ASSERT_EQUAL(m->out[0].err, POPK_ERRM_PROP);
    frame f = frame_new(m);
    popk_prog_eval(m->prog_pk, f.slots, f.stack);
    CLOSE(f.slots[m->lin_slot[POPK_LIN_CL]], exp(1.6));
    CLOSE(f.slots[m->lin_slot[POPK_LIN_V]], exp(4.5));
    CLOSE(f.slots[m->lin_slot[POPK_LIN_Q2]], exp(1.6));
    CLOSE(f.slots[m->lin_slot[POPK_LIN_V2]], exp(4.0));
    CLOSE(f.slots[m->lin_slot[POPK_LIN_KA]], exp(0.2));
    CU_ASSERT_EQUAL(m->lin_slot[POPK_LIN_Q3], -1);
    frame_free(&f);
    popk_model_free(m);

    m = load("models/acop/Bolus_2CPTMM.yaml");
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    f = frame_new(m);
    popk_prog_eval(m->prog_pk, f.slots, f.stack);
    f.slots[m->amt_slot] = 5000;
    f.slots[m->amt_slot + 1] = 800;
    popk_prog_eval(m->prog_rhs, f.slots, f.stack);
    double vm = exp(7), km = exp(5.7), v = exp(4.5), q = exp(1.6), v2 = exp(4);
    double c = 5000 / v;
    CU_ASSERT_DOUBLE_EQUAL(f.slots[m->deriv_slot], q / v2 * 800 - q / v * 5000 - vm * c / (km + c),
                           1e-12);
    CU_ASSERT_DOUBLE_EQUAL(f.slots[m->deriv_slot + 1], q / v * 5000 - q / v2 * 800, 1e-12);
    frame_free(&f);
    popk_model_free(m);
}

/* Every ACOP model is NONMEM's P = exp(THETA + ETA) for each individual parameter p, with the
 * theta named tp: at the initial estimates p = exp(init of tp). */
static void test_acop_all(void)
{
    static const char *const routes[] = {"Bolus", "Infusion", "Oral"};
    static const char *const kinds[] = {"1CPT", "1CPT_ode", "2CPT", "2CPT_ode", "1CPTMM",
                                        "2CPTMM"};
    for (int r = 0; r < 3; r++)
        for (int k = 0; k < 6; k++) {
            char rel[128];
            snprintf(rel, sizeof rel, "models/acop/%s_%s.yaml", routes[r], kinds[k]);
            popk_model *m = load(rel);
            CU_ASSERT_PTR_NOT_NULL_FATAL(m);
            CU_ASSERT_EQUAL(m->ntheta, m->nind);
            CU_ASSERT_EQUAL(m->neta, m->nind);
            CU_ASSERT_EQUAL(m->ncmt, (r == 2) + (kinds[k][0] == '2' ? 2 : 1));
            CU_ASSERT_EQUAL(m->default_obs_cmt, r == 2 ? 2 : 1);
            for (int e = 0; e < m->neta; e++)
                CU_ASSERT_EQUAL(m->omega[e * m->neta + e], 0.15);
            CU_ASSERT_EQUAL(m->out[0].err, POPK_ERRM_PROP);
            frame f = frame_new(m);
            popk_prog_eval(m->prog_pk, f.slots, f.stack);
            for (int i = 0; i < m->nind; i++) {
                char tname[64];
                snprintf(tname, sizeof tname, "t%s", m->ind_name[i]);
                int t = 0;
                while (t < m->ntheta && strcmp(m->theta[t].name, tname))
                    t++;
                CU_ASSERT_FATAL(t < m->ntheta);
                CLOSE(f.slots[m->ind_slot + i], exp(m->theta[t].init));
            }
            f.slots[m->amt_slot + m->default_obs_cmt - 1] = 1234;
            popk_prog_eval(m->prog_out, f.slots, f.stack);
            CLOSE(f.slots[m->out[0].slot], 1234 / exp(4.5));
            frame_free(&f);
            popk_model_free(m);
        }
}

static void test_warfarin_pkpd(void)
{
    popk_model *m = load("models/warfarin_pkpd.yaml");
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_EQUAL(m->ncmt, 3);
    CU_ASSERT_EQUAL(m->out[1].dvid, 2);
    CU_ASSERT_EQUAL(m->out[1].cmt, 3);
    frame f = frame_new(m);
    f.slots[cov(m, "WT")] = 70;
    popk_prog_eval(m->prog_pk, f.slots, f.stack);
    f.slots[m->amt_slot] = 50;
    f.slots[m->amt_slot + 1] = 30;
    f.slots[m->amt_slot + 2] = -4;
    popk_prog_eval(m->prog_rhs, f.slots, f.stack);
    double kout = log(2) / 17, kin = kout * 100, cp = 30 / 10.0;
    CLOSE(f.slots[m->deriv_slot], -50.0);
    CLOSE(f.slots[m->deriv_slot + 1], 50 - 0.2 / 10 * 30);
    CLOSE(f.slots[m->deriv_slot + 2], -kin * cp / (1.5 + cp) - kout * -4);
    popk_prog_eval(m->prog_out, f.slots, f.stack);
    CLOSE(f.slots[m->out[0].slot], cp);
    CLOSE(f.slots[m->out[1].slot], 96.0);
    frame_free(&f);
    popk_model_free(m);
}

static void test_covariate_models(void)
{
    popk_model *m = load("models/vancomycin.yaml");
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    int dial = cov(m, "DIAL");
    CU_ASSERT_EQUAL(m->cov[2].kind, POPK_COVDEF_CATEGORICAL);
    CU_ASSERT(m->cov[2].has_default);
    CU_ASSERT_EQUAL(m->cov[2].default_value, 0);
    frame f = frame_new(m);
    f.slots[cov(m, "CRCL")] = 60;
    f.slots[cov(m, "WT")] = 80;
    f.slots[dial] = 1;
    popk_prog_eval(m->prog_pk, f.slots, f.stack);
    CLOSE(f.slots[ind(m, "cl")], 4.5 * pow(0.5, 0.8) * 0.7);
    CLOSE(f.slots[ind(m, "vc")], 58.4 * (80 / 70.0) * 0.5);
    f.slots[cov(m, "CRCL")] = 200; /* capped at 150 */
    f.slots[dial] = 0;
    popk_prog_eval(m->prog_pk, f.slots, f.stack);
    CLOSE(f.slots[ind(m, "cl")], 4.5 * pow(150 / 120.0, 0.8));
    CLOSE(f.slots[m->omega_block[1] == 1 ? m->eta_slot : 0], 0.0);
    CLOSE(m->omega[1 * 3 + 1], 0.51019);
    frame_free(&f);
    popk_model_free(m);

    m = load("models/voriconazole.yaml");
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    const popk_covdef *g = &m->cov[0];
    CU_ASSERT_EQUAL(g->nlevels, 5);
    CU_ASSERT_STRING_EQUAL(g->levels[3], "RM");
    CU_ASSERT_EQUAL(g->codes[3], 3);
    /* the block given as sd [0.4, 0.6], correlation 0.3 */
    CU_ASSERT_EQUAL(m->nomega_block, 3);
    CU_ASSERT_EQUAL(m->omega_block[2], 2);
    CU_ASSERT_EQUAL(m->omega_block[3], 2);
    CLOSE(m->omega[2 * 4 + 2], 0.4 * 0.4);
    CLOSE(m->omega[3 * 4 + 2], 0.3 * 0.4 * 0.6);
    CLOSE(m->omega[2 * 4 + 3], 0.3 * 0.4 * 0.6);
    CLOSE(m->omega[3 * 4 + 3], 0.6 * 0.6);
    f = frame_new(m);
    const double expect[5] = {43.9 * (1 - 0.412), 43.9 * (1 - 0.412), 43.9, 43.9, 43.9};
    for (int level = 0; level < 5; level++) {
        f.slots[g->slot] = g->codes[level];
        popk_prog_eval(m->prog_pk, f.slots, f.stack);
        CLOSE(f.slots[ind(m, "vmax")], expect[level]);
    }
    CU_ASSERT(m->dose[0].alag_slot >= 0 && m->dose[0].f_slot >= 0);
    CLOSE(f.slots[m->dose[0].alag_slot], 0.162);
    CLOSE(f.slots[m->dose[0].f_slot], 0.942);
    frame_free(&f);
    popk_model_free(m);

    m = load("models/warfarin.yaml");
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_EQUAL(m->nderived, 1);
    CU_ASSERT_EQUAL(m->out[0].dvid, 1);
    CU_ASSERT_EQUAL(m->out[0].err, POPK_ERRM_COMB_VAR);
    f = frame_new(m);
    f.slots[cov(m, "WT")] = 35;
    popk_prog_eval(m->prog_pk, f.slots, f.stack);
    double cl = 0.2 * pow(0.5, 0.75), v = 10 * 0.5;
    CLOSE(f.slots[ind(m, "cl")], cl);
    CLOSE(f.slots[m->dose[0].alag_slot], 0.5);
    popk_prog_eval(m->prog_out, f.slots, f.stack);
    CLOSE(f.slots[m->derived_slot[0]], log(2) * v / cl);
    frame_free(&f);
    popk_model_free(m);
}

/* ---------------------------------------------------------------------------------------- */

static const char *const rate_form =
    "theta: {tk: 0.1, tk12: 0.2, tk21: 0.3, tk13: 0.04, tk31: 0.05}\n"
    "omega:\n"
    "  - block: [e1, e2, e3]\n"
    "    values: [0.1, 0.02, 0.2, 0.01, 0.03, 0.3]\n"
    "    fixed: true\n"
    "  - e4: {sd: 0.5}\n"
    "sigma: {a: 0.1, b: {init: 0.2, lower: 0, upper: 1}}\n"
    "covariates:\n"
    "  SEX: {male: 1, female: 0}\n"
    "  WT: {unit: kg, reference: 70, default: 70}\n"
    "individual:\n"
    "  k: tk * exp(e1) * if(SEX == \"female\", 0.8, 1) * WT / 70\n"
    "linear: {K: k, K12: tk12 * exp(e2), K21: tk21, K13: tk13 * exp(e3 + e4), K31: tk31}\n"
    "default_dose: peripheral2\n"
    "observe:\n"
    "  amount:\n"
    "    value: central + 0 * t\n"
    "    cmt: 2\n"
    "    error: {combined_sd: [a, b]}\n";

static void test_schema(void)
{
    popk_error err;
    popk_model *m = parse(rate_form, &err);
    if (!m) {
        char buf[1024];
        printf("\n  %s\n", popk_error_format(&err, buf, sizeof buf));
    }
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_STRING_EQUAL(m->name, "inline");
    CU_ASSERT_EQUAL(m->lin_rate_form, 1);
    CU_ASSERT_EQUAL(m->lin_ncmt, 3);
    CU_ASSERT_EQUAL(m->lin_depot, 0);
    CU_ASSERT_EQUAL(m->ncmt, 3);
    CU_ASSERT_STRING_EQUAL(m->cmt_name[2], "peripheral2");
    CU_ASSERT_EQUAL(m->default_dose_cmt, 3);
    CU_ASSERT_EQUAL(m->default_obs_cmt, 2);
    CU_ASSERT_EQUAL(m->lin_slot[POPK_LIN_CL], -1);
    CU_ASSERT(m->lin_slot[POPK_LIN_K31] >= 0);
    /* omega: lower triangle row by row */
    const double expect[4][4] = {{0.1, 0.02, 0.01, 0}, {0.02, 0.2, 0.03, 0},
                                 {0.01, 0.03, 0.3, 0}, {0, 0, 0, 0.25}};
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++)
            CU_ASSERT_EQUAL(m->omega[i * 4 + j], expect[i][j]);
    CU_ASSERT_EQUAL(m->nomega_block, 2);
    CU_ASSERT_EQUAL(m->omega_fixed[0], 1);
    CU_ASSERT_EQUAL(m->omega_fixed[1], 0);
    CU_ASSERT_EQUAL(m->omega_block[3], 1);
    CU_ASSERT_EQUAL(m->out[0].err, POPK_ERRM_COMB_SD);
    CU_ASSERT_EQUAL(m->out[0].sig_a, 0);
    CU_ASSERT_EQUAL(m->out[0].sig_b, 1);
    CU_ASSERT_EQUAL(m->cov[0].nlevels, 2);
    CU_ASSERT_STRING_EQUAL(m->cov[0].levels[1], "female");
    CU_ASSERT_EQUAL(m->cov[0].codes[1], 0);
    CU_ASSERT(m->cov[0].used && m->cov[1].used);
    CU_ASSERT_EQUAL(m->cov[1].reference, 70);
    frame f = frame_new(m);
    f.slots[m->cov[0].slot] = 0;
    f.slots[m->cov[1].slot] = 35;
    f.slots[m->eta_slot + 2] = 0.1;
    f.slots[m->eta_slot + 3] = 0.2;
    popk_prog_eval(m->prog_pk, f.slots, f.stack);
    CLOSE(f.slots[m->lin_slot[POPK_LIN_K]], 0.1 * 0.8 * 0.5);
    CLOSE(f.slots[m->lin_slot[POPK_LIN_K13]], 0.04 * exp(0.1 + 0.2));
    frame_free(&f);
    popk_model_free(m);

    /* errors name the position in the text */
    m = parse("theta: {a: 1}\nobserve:\n  y: {value: a, error: {additive: s}}\n", &err);
    CU_ASSERT_PTR_NULL(m);
    CU_ASSERT_EQUAL(err.code, POPK_ERR_MODEL);
    CU_ASSERT_STRING_EQUAL(err.file, "inline.yaml");
    CU_ASSERT_EQUAL(err.line, 3);
    CU_ASSERT_EQUAL(err.column, 35);
    CU_ASSERT_STRING_EQUAL(err.message, "unknown sigma 's'");
    CU_ASSERT_STRING_EQUAL(err.context, "  y: {value: a, error: {additive: s}}");

    m = parse("theta: {a: 1}\nsigma: {s: 1}\nobserve:\n  y: {value: a, error: {additive: s}}\n",
              &err);
    CU_ASSERT_PTR_NULL(m);
    CU_ASSERT_EQUAL(err.line, 4);
    CU_ASSERT_EQUAL(err.column, 14);
    CU_ASSERT_STRING_EQUAL(err.message, "a theta 'a' cannot be used in observe; define an "
                                        "individual parameter from it");
    CU_ASSERT_PTR_NULL(popk_model_load("/nonexistent/model.yaml", &err));
    CU_ASSERT_EQUAL(err.code, POPK_ERR_IO);
    popk_model_free(NULL);
}

/* ---------------------------------------------------------------------------------------- */

static const char *const bind_model =
    "theta: {tcl: 1, tv: 3, tka: 0}\n"
    "sigma: {s: 0.1}\n"
    "covariates:\n"
    "  WT: {default: 70}\n"
    "  GENO: [PM, IM, NM]\n"
    "  AGE: {unit: years}\n"
    "individual:\n"
    "  cl: exp(tcl) * WT / 70 * if(GENO == \"PM\", 0.5, 1)\n"
    "  v: exp(tv)\n"
    "  ka: exp(tka)\n"
    "linear: {CL: cl, V: v, KA: ka}\n"
    "observe:\n"
    "  cp: {value: central / v, cmt: central, error: {proportional: s}}\n";

static popk_binding *bind_text(const char *model, const char *csv, popk_error *err)
{
    popk_model *m = parse(model, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    popk_data *d = popk_data_parse("data.csv", csv, strlen(csv), err);
    if (!d) {
        char buf[1024];
        printf("\n  data: %s\n", popk_error_format(err, buf, sizeof buf));
    }
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    popk_binding *b = popk_model_bind(m, d, err);
    popk_data_free(d);
    popk_model_free(m);
    return b;
}

static void expect_bind_error(const char *model, const char *csv, int line, const char *msg)
{
    popk_error err;
    popk_binding *b = bind_text(model, csv, &err);
    CU_ASSERT_PTR_NULL(b);
    popk_binding_free(b);
    CU_ASSERT_EQUAL(err.code, POPK_ERR_DATA);
    CU_ASSERT_EQUAL(err.line, line);
    CU_ASSERT_STRING_EQUAL(err.file, "data.csv");
    if (strcmp(err.message, msg))
        printf("\n  expected: %s\n  got:      %s\n", msg, err.message);
    CU_ASSERT_STRING_EQUAL(err.message, msg);
}

static void test_bind(void)
{
    popk_error err;
    popk_binding *b = bind_text(bind_model,
                                "ID,TIME,DV,AMT,EVID,MDV,CMT,WT,GENO\n"
                                "1,0,0,100,1,1,1,80,PM\n"
                                "1,1,5,0,0,0,2,80,PM\n"
                                "1,2,4,0,0,0,0,.,NM\n"
                                "2,0,0,100,1,1,0,60,IM\n"
                                "2,1,0,0,2,1,2,60,IM\n",
                                &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    CU_ASSERT_EQUAL(b->nrec, 5);
    CU_ASSERT_EQUAL(b->ncov, 3);
    const double wt[5] = {80, 80, 70, 60, 60}, geno[5] = {0, 0, 2, 1, 1};
    const int out[5] = {-1, 0, 0, -1, -1};
    for (int r = 0; r < 5; r++) {
        CU_ASSERT_EQUAL(b->cov[r], wt[r]);
        CU_ASSERT_EQUAL(b->cov[5 + r], geno[r]);
        CU_ASSERT(isnan(b->cov[10 + r])); /* AGE: declared, unused, absent */
        CU_ASSERT_EQUAL(b->out_of_rec[r], out[r]);
    }
    popk_binding_free(b);

    /* numeric codes are accepted for categorical covariates */
    b = bind_text(bind_model, "ID,TIME,DV,AMT,EVID,MDV,CMT,WT,GENO\n1,0,0,100,1,1,1,80,2\n",
                  &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    CU_ASSERT_EQUAL(b->cov[1], 2);
    popk_binding_free(b);

    expect_bind_error(bind_model,
                      "ID,TIME,DV,AMT,EVID,MDV,CMT,WT,GENO\n1,0,0,100,1,1,1,80,PM\n"
                      "1,1,5,0,0,0,3,80,PM\n",
                      3, "CMT 3 is not a compartment of model 'inline' (compartments: 1 depot, "
                         "2 central)");
    expect_bind_error(bind_model,
                      "ID,TIME,DV,AMT,EVID,MDV,CMT,WT,GENO\n1,0,0,100,1,1,1,80,PM\n"
                      "1,1,5,0,0,0,2,80,XM\n",
                      3, "unknown level 'XM' of covariate 'GENO' (levels: PM=0, IM=1, NM=2)");
    expect_bind_error(bind_model, "ID,TIME,DV,AMT,EVID,MDV,CMT,WT,GENO\n1,0,0,100,1,1,1,80,5\n",
                      2, "value 5 of covariate 'GENO' is not the code of a level (levels: PM=0, "
                         "IM=1, NM=2)");
    expect_bind_error(bind_model, "ID,TIME,DV,AMT,EVID,MDV,CMT,WT\n1,0,0,100,1,1,1,80\n", 1,
                      "covariate 'GENO' used by the model is not a column of the dataset");
    expect_bind_error(bind_model,
                      "ID,TIME,DV,AMT,EVID,MDV,CMT,WT,GENO\n1,0,0,100,1,1,1,80,PM\n"
                      "1,1,5,0,0,0,2,80,.\n",
                      3, "missing value of covariate 'GENO' (the model declares no default)");
    expect_bind_error(bind_model,
                      "ID,TIME,DV,AMT,EVID,MDV,CMT,WT,GENO\n1,0,0,100,1,1,1,heavy,PM\n", 2,
                      "covariate 'WT' must be a number, found 'heavy'");
    expect_bind_error(bind_model,
                      "ID,TIME,DV,AMT,EVID,MDV,CMT,WT,GENO\n1,0,0,100,1,1,1,80,PM\n"
                      "1,1,5,0,0,0,1,80,PM\n",
                      3, "observation in CMT 1 matches no output of the model (give an output "
                         "'cmt: 1')");

    /* two outputs chosen by DVID */
    const char *two = "theta: {tv: 3}\nsigma: {s: 0.1}\nindividual: {v: exp(tv)}\n"
                      "odes: {gut: -gut, central: gut - central, effect: central - effect}\n"
                      "observe:\n"
                      "  cp: {value: central / v, dvid: 1, error: {additive: s}}\n"
                      "  pca: {value: effect, cmt: effect, dvid: 2, error: {additive: s}}\n";
    b = bind_text(two,
                  "ID,TIME,DV,AMT,EVID,MDV,CMT,DVID\n1,0,0,100,1,1,1,1\n1,1,5,0,0,0,2,1\n"
                  "1,1,80,0,0,0,3,2\n1,2,4,0,0,0,2,1\n",
                  &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    CU_ASSERT_EQUAL(b->out_of_rec[0], -1);
    CU_ASSERT_EQUAL(b->out_of_rec[1], 0);
    CU_ASSERT_EQUAL(b->out_of_rec[2], 1);
    CU_ASSERT_EQUAL(b->out_of_rec[3], 0);
    popk_binding_free(b);
    expect_bind_error(two, "ID,TIME,DV,AMT,EVID,MDV,CMT,DVID\n1,1,5,0,0,0,2,3\n", 2,
                      "observation with DVID 3 matches no output of the model");
    /* without a DVID column, observations go by CMT */
    b = bind_text(two, "ID,TIME,DV,AMT,EVID,MDV,CMT\n1,1,5,0,0,0,3\n1,1,5,0,0,0,0\n", &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    CU_ASSERT_EQUAL(b->out_of_rec[0], 1);
    CU_ASSERT_EQUAL(b->out_of_rec[1], 0);
    popk_binding_free(b);
}

/* The bad-model corpus through the library: same first line as the CLI prints, and no leak
 * on any error path (the sanitizer build checks). */
static void test_bad_models_in_process(void)
{
    char dirpath[4096];
    snprintf(dirpath, sizeof dirpath, "%s", popk_test_src("tests/data/bad-models"));
    char cwd[4096];
    CU_ASSERT_PTR_NOT_NULL_FATAL(getcwd(cwd, sizeof cwd));
    CU_ASSERT_EQUAL_FATAL(chdir(dirpath), 0);
    DIR *dir = opendir(".");
    CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
    struct dirent *de;
    int n = 0;
    while ((de = readdir(dir))) {
        size_t len = strlen(de->d_name);
        if (len < 6 || strcmp(de->d_name + len - 5, ".yaml"))
            continue;
        char expected_path[512], expected[1024] = "", got[1024];
        snprintf(expected_path, sizeof expected_path, "%.*s.expected", (int)(len - 5),
                 de->d_name);
        FILE *f = fopen(expected_path, "r");
        CU_ASSERT_PTR_NOT_NULL_FATAL(f);
        if (!fgets(expected, sizeof expected, f))
            expected[0] = '\0';
        fclose(f);
        expected[strcspn(expected, "\n")] = '\0';
        popk_error err;
        popk_model *m = popk_model_load(de->d_name, &err);
        CU_ASSERT_PTR_NULL(m);
        popk_model_free(m);
        popk_error_format(&err, got, sizeof got);
        if (strcmp(got, expected))
            printf("\n  %s\n    expected: %s\n    got:      %s\n", de->d_name, expected, got);
        CU_ASSERT_STRING_EQUAL(got, expected);
        n++;
    }
    closedir(dir);
    CU_ASSERT(n >= 25);
    CU_ASSERT_EQUAL(chdir(cwd), 0);
}

/* Every prefix of every bundled model (cut every 11 bytes) parses to a model or to an error
 * with a position inside the text: never a crash, never an error without a location. */
static void test_truncated_models(void)
{
    static const char *const files[] = {"models/theophylline.yaml", "models/voriconazole.yaml",
                                        "models/nmtest.yaml", "models/vancomycin.yaml",
                                        "models/warfarin_pkpd.yaml"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        FILE *f = fopen(popk_test_src(files[i]), "rb");
        CU_ASSERT_PTR_NOT_NULL_FATAL(f);
        static char buf[1 << 15];
        size_t len = fread(buf, 1, sizeof buf, f);
        fclose(f);
        int lines = 1;
        for (size_t k = 0; k < len; k++)
            lines += buf[k] == '\n';
        for (size_t cut = 0; cut <= len; cut += 11) {
            popk_error err;
            popk_model *m = popk_model_parse("cut.yaml", buf, cut, &err);
            if (!m) {
                CU_ASSERT(err.code == POPK_ERR_MODEL);
                CU_ASSERT(err.line >= 1 && err.line <= lines);
                CU_ASSERT(err.message[0] != '\0');
            }
            popk_model_free(m);
        }
    }
}

/* Random byte substitutions in bundled models (a fixed-seed generator, so runs repeat):
 * each result is a model or an error with a location, never a crash or a leak. */
static void test_mutated_models(void)
{
    static const char *const files[] = {"models/voriconazole.yaml", "models/nmtest.yaml"};
    static const char alphabet[] = "{}[]:,-&*!|>'\"#%@ \n\tazAZ09._()+^=<";
    unsigned long long state = 12345;
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        FILE *f = fopen(popk_test_src(files[i]), "rb");
        CU_ASSERT_PTR_NOT_NULL_FATAL(f);
        static char orig[1 << 15], buf[1 << 15];
        size_t len = fread(orig, 1, sizeof orig, f);
        fclose(f);
        for (int trial = 0; trial < 300; trial++) {
            memcpy(buf, orig, len);
            for (int k = 0; k < 3; k++) {
                state = state * 6364136223846793005ULL + 1442695040888963407ULL;
                size_t pos = (size_t)(state >> 33) % len;
                buf[pos] = alphabet[(state >> 17) % (sizeof alphabet - 1)];
            }
            popk_error err;
            popk_model *m = popk_model_parse("mutant.yaml", buf, len, &err);
            if (!m) {
                CU_ASSERT(err.code == POPK_ERR_MODEL || err.code == POPK_ERR_LIMIT);
                CU_ASSERT(err.line >= 1);
                CU_ASSERT(err.message[0] != '\0');
            }
            popk_model_free(m);
        }
    }
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("model", NULL, NULL);
    CU_add_test(s, "all_models_load", test_all_models_load);
    CU_add_test(s, "theophylline", test_theophylline);
    CU_add_test(s, "theophylline_ode", test_theophylline_ode);
    CU_add_test(s, "wang2007", test_wang2007);
    CU_add_test(s, "nmtest", test_nmtest);
    CU_add_test(s, "acop", test_acop);
    CU_add_test(s, "acop_all", test_acop_all);
    CU_add_test(s, "warfarin_pkpd", test_warfarin_pkpd);
    CU_add_test(s, "covariate_models", test_covariate_models);
    CU_add_test(s, "schema", test_schema);
    CU_add_test(s, "bind", test_bind);
    CU_add_test(s, "bad_models_in_process", test_bad_models_in_process);
    CU_add_test(s, "truncated_models", test_truncated_models);
    CU_add_test(s, "mutated_models", test_mutated_models);
    return popk_test_run();
}

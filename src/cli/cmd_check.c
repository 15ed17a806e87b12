/* cli/cmd_check.c — 'popk check MODEL.yaml [DATA.csv]': validate a model (and a dataset
 * against it) and print what the model declares. */
#include "cli/cli.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "model/model.h"

static void usage(FILE *out)
{
    fprintf(out, "usage: popk check MODEL.yaml [DATA.csv]\n\n"
                 "Validate a model file and print a summary of it. With a dataset, also check\n"
                 "that every covariate the model uses is a column, every CMT is a compartment\n"
                 "and every observation answers an output. Exit status 0 when valid, 2 if not.\n");
}

static void print_bound(double v)
{
    if (isinf(v))
        printf("%s", v < 0 ? "-inf" : "inf");
    else
        printf("%g", v);
}

static void print_param(const popk_param *p)
{
    printf("  %-12s %-12g (", p->name, p->init);
    print_bound(p->lower);
    printf(", ");
    print_bound(p->upper);
    printf(")%s", p->fixed ? " fixed" : "");
    if (p->label)
        printf("  %s", p->label);
    if (p->unit)
        printf(" [%s]", p->unit);
    printf("\n");
}

static const char *errm_name(popk_errm_kind k)
{
    static const char *const names[] = {"additive", "proportional", "combined_sd",
                                        "combined_var", "power", "log"};
    return names[k];
}

static void print_omega(const popk_model *m)
{
    printf("eta (%d), omega in %d block%s\n", m->neta, m->nomega_block,
           m->nomega_block == 1 ? "" : "s");
    for (int b = 0; b < m->nomega_block; b++) {
        int first = -1, n = 0;
        for (int i = 0; i < m->neta; i++)
            if (m->omega_block[i] == b) {
                if (first < 0)
                    first = i;
                n++;
            }
        if (n == 1) {
            printf("  %-12s var %g%s\n", m->eta_name[first], m->omega[first * m->neta + first],
                   m->omega_fixed[b] ? " fixed" : "");
            continue;
        }
        printf("  block of %d%s:", n, m->omega_fixed[b] ? " (fixed)" : "");
        for (int i = first; i < first + n; i++)
            printf(" %s", m->eta_name[i]);
        printf("\n");
        for (int i = first; i < first + n; i++) {
            printf("    ");
            for (int j = first; j <= i; j++)
                printf(" %10g", m->omega[i * m->neta + j]);
            printf("\n");
        }
    }
}

static void print_covariates(const popk_model *m)
{
    printf("covariates (%d)\n", m->ncov);
    for (int i = 0; i < m->ncov; i++) {
        const popk_covdef *cv = &m->cov[i];
        printf("  %-12s ", cv->name);
        if (cv->kind == POPK_COVDEF_CONTINUOUS) {
            printf("continuous");
            if (cv->unit)
                printf(", unit %s", cv->unit);
            if (!isnan(cv->reference))
                printf(", reference %g", cv->reference);
            if (cv->has_default)
                printf(", default %g", cv->default_value);
        } else {
            printf("categorical:");
            for (int j = 0; j < cv->nlevels; j++)
                printf(" %s=%g", cv->levels[j], cv->codes[j]);
            if (cv->has_default)
                printf(", default %g", cv->default_value);
        }
        printf("%s\n", cv->used ? "" : " (not used)");
    }
}

static void print_structure(const popk_model *m)
{
    static const char *const lin_names[POPK_LIN_NPAR] = {"CL", "V", "Q", "V2", "Q3", "V3",
                                                         "KA", "K", "K12", "K21", "K13", "K31"};
    if (m->kind == POPK_STRUCT_NONE) {
        printf("structure    none (outputs are closed-form expressions of t)\n");
        return;
    }
    if (m->kind == POPK_STRUCT_LINEAR) {
        printf("structure    linear, %d compartment%s, %s, %s form (", m->lin_ncmt,
               m->lin_ncmt == 1 ? "" : "s",
               m->lin_depot ? "first-order absorption" : "bolus/infusion input",
               m->lin_rate_form ? "rate-constant" : "clearance");
        int first = 1;
        for (int k = 0; k < POPK_LIN_NPAR; k++)
            if (m->lin_slot[k] >= 0) {
                printf("%s%s", first ? "" : " ", lin_names[k]);
                first = 0;
            }
        printf(")\n");
    } else {
        printf("structure    odes, %d compartment%s (rtol %g, atol %g, max_steps %ld)\n",
               m->ncmt, m->ncmt == 1 ? "" : "s", m->rtol, m->atol, m->max_steps);
        static const char *const methods[] = {"auto", "expm", "bdf", "adams"};
        if (popk_model_uses_expm(m))
            printf("solver       matrix exponential (method %s: the system is linear with "
                   "constant coefficients)\n", methods[m->ode_method]);
        else
            printf("solver       CVODES %s (method %s%s)\n",
                   m->ode_method == POPK_ODE_BDF ? "BDF" : "Adams (BDF if Adams stalls)",
                   methods[m->ode_method],
                   m->ode_affine ? "; the system is linear: method auto would use the matrix "
                                   "exponential"
                                 : ": the system is not linear");
        if (m->ode_nonaffine && m->ode_method != POPK_ODE_BDF && m->ode_method != POPK_ODE_ADAMS)
            printf("             %s\n", m->ode_nonaffine);
    }
    printf("compartments");
    for (int i = 0; i < m->ncmt; i++) {
        printf(" %d %s", i + 1, m->cmt_name[i]);
        if (i + 1 == m->default_dose_cmt && i + 1 == m->default_obs_cmt)
            printf(" (default dose, observation)");
        else if (i + 1 == m->default_dose_cmt)
            printf(" (default dose)");
        else if (i + 1 == m->default_obs_cmt)
            printf(" (default observation)");
        printf("%s", i + 1 < m->ncmt ? "," : "\n");
    }
    static const char *const attr[] = {"F", "ALAG", "RATE", "DUR"};
    for (int i = 0; i < m->ncmt; i++) {
        const int slots[4] = {m->dose[i].f_slot, m->dose[i].alag_slot, m->dose[i].rate_slot,
                              m->dose[i].dur_slot};
        int any = 0;
        for (int a = 0; a < 4; a++)
            if (slots[a] >= 0) {
                printf("%s%s", any ? " " : "", any ? attr[a] : "");
                if (!any)
                    printf("dosing       %s: %s", m->cmt_name[i], attr[a]);
                any = 1;
            }
        if (any)
            printf("\n");
    }
}

static void print_outputs(const popk_model *m)
{
    printf("outputs (%d)\n", m->nout);
    for (int i = 0; i < m->nout; i++) {
        const popk_output *o = &m->out[i];
        printf("  %-12s = %s\n", o->name, o->text);
        printf("  %-12s   ", "");
        if (o->cmt > 0)
            printf("cmt %d (%s), ", o->cmt, m->cmt_name[o->cmt - 1]);
        if (o->dvid > 0)
            printf("dvid %d, ", o->dvid);
        printf("error %s(", errm_name(o->err));
        const int sig[3] = {o->sig_a, o->sig_b, o->sig_c};
        int first = 1;
        for (int k = 0; k < 3; k++)
            if (sig[k] >= 0) {
                printf("%s%s", first ? "" : ", ", m->sigma[sig[k]].name);
                first = 0;
            }
        printf(")\n");
    }
    if (m->nderived > 0) {
        printf("derived (%d)\n ", m->nderived);
        for (int i = 0; i < m->nderived; i++)
            printf(" %s", m->derived_name[i]);
        printf("\n");
    }
}

static void print_summary(const popk_model *m)
{
    printf("model        %s (%s)\n", m->name, m->path);
    if (m->description)
        printf("description  %s\n", m->description);
    if (m->reference)
        printf("reference    %s\n", m->reference);
    print_structure(m);
    printf("theta (%d)\n", m->ntheta);
    for (int i = 0; i < m->ntheta; i++)
        print_param(&m->theta[i]);
    print_omega(m);
    printf("sigma (%d, standard deviations)\n", m->nsigma);
    for (int i = 0; i < m->nsigma; i++)
        print_param(&m->sigma[i]);
    print_covariates(m);
    printf("individual (%d)\n", m->nind);
    for (int i = 0; i < m->nind; i++)
        printf("  %-12s = %s\n", m->ind_name[i], m->ind_text[i]);
    print_outputs(m);
}

int popk_cmd_check(int argc, char **argv)
{
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        usage(stdout);
        return POPK_EXIT_OK;
    }
    if (argc < 2 || argc > 3) {
        usage(stderr);
        return POPK_EXIT_INPUT;
    }
    popk_error err;
    popk_model *m = popk_model_load(argv[1], &err);
    if (!m) {
        popk_cli_report(&err);
        return POPK_EXIT_INPUT;
    }
    int rc = POPK_EXIT_OK;
    popk_data *d = NULL;
    popk_binding *b = NULL;
    if (argc == 3) {
        d = popk_data_read(argv[2], &err);
        b = d ? popk_model_bind(m, d, &err) : NULL;
        if (!b) {
            popk_cli_report(&err);
            rc = POPK_EXIT_INPUT;
        }
    }
    if (rc == POPK_EXIT_OK) {
        print_summary(m);
        if (d) {
            size_t nobs = 0;
            for (size_t s = 0; s < d->nsub; s++)
                nobs += d->sub[s].nobs;
            printf("data         %s: %zu records, %zu subjects, %zu observations; covariates, "
                   "compartments and outputs match\n",
                   d->path, d->nrec, d->nsub, nobs);
        }
        printf("ok\n");
    }
    popk_binding_free(b);
    popk_data_free(d);
    popk_model_free(m);
    return rc;
}

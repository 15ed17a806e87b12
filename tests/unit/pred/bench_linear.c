/* Benchmark of pred/linear: nanoseconds per uncached advance (doubles, and duals with nd = 3)
 * for every system shape, bolus-only and with a zero-order input; then an ACOP-sized run
 * uncached and through the propagator cache. Not a test; see bench/linear.sh. */
#include "pred/linear.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

/* CPU time of this process: on a shared machine, wall time would count other jobs. */
static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

enum { STEPS = 64 };

int main(void)
{
    /* each figure is the best of REPEATS runs of `calls` advances */
    enum { REPEATS = 5 };
    const long calls_d = 400000, calls_dual = 40000;
    const int nd = 3;
    double steps[STEPS];
    for (int i = 0; i < STEPS; i++)
        steps[i] = 0.25 + 0.37 * i; /* event spacings of a typical PK dataset, in hours */
    printf("ns per advance (process CPU time, best of %d)\n", REPEATS);
    printf("%-22s %12s %12s %14s %14s\n", "system", "double", "+input", "dual nd=3",
           "+input");
    volatile double sink = 0;
    for (int depot = 0; depot <= 1; depot++)
        for (int ncmt = 1; ncmt <= 3; ncmt++) {
            popk_linsys s;
            memset(&s, 0, sizeof s);
            s.nd = nd;
            popk_dual cl = pd_const(3.0, nd), v = pd_const(20.0, nd), q2 = pd_const(5.0, nd),
                      v2 = pd_const(40.0, nd), q3 = pd_const(1.0, nd),
                      v3 = pd_const(100.0, nd), ka = pd_const(1.2, nd);
            cl.d[0] = v.d[1] = ka.d[2] = 1;
            popk_linsys_from_clearances(&s, &cl, &v, ncmt >= 2 ? &q2 : NULL,
                                        ncmt >= 2 ? &v2 : NULL, ncmt >= 3 ? &q3 : NULL,
                                        ncmt >= 3 ? &v3 : NULL, depot ? &ka : NULL);
            int n = popk_linsys_n(&s);
            double A0[4] = {100, 50, 20, 10}, R[4] = {0, 0, 0, 0}, A[4];
            R[depot] = 10; /* infusion into the central compartment */
            double result[4];
            for (int with_input = 0; with_input <= 1; with_input++) {
                result[with_input] = result[2 + with_input] = 1e300;
                for (int rep = 0; rep < REPEATS; rep++) {
                    double t0 = now_ns();
                    for (long c = 0; c < calls_d; c++) {
                        memcpy(A, A0, sizeof A);
                        popk_linsys_advance_d(&s, A, with_input ? R : NULL, steps[c % STEPS]);
                        sink += A[n - 1];
                    }
                    double ns = (now_ns() - t0) / calls_d;
                    result[with_input] = ns < result[with_input] ? ns : result[with_input];
                }
            }
            popk_dual Ad[4], Rd[4];
            for (int i = 0; i < 4; i++)
                Rd[i] = pd_const(R[i], nd);
            for (int with_input = 0; with_input <= 1; with_input++) {
                for (int rep = 0; rep < REPEATS; rep++) {
                    double t0 = now_ns();
                    for (long c = 0; c < calls_dual; c++) {
                        for (int i = 0; i < n; i++)
                            Ad[i] = pd_const(A0[i], nd);
                        popk_linsys_advance(&s, Ad, with_input ? Rd : NULL,
                                            pd_const(steps[c % STEPS], nd));
                        sink += Ad[n - 1].d[0];
                    }
                    double ns = (now_ns() - t0) / calls_dual;
                    result[2 + with_input] =
                        ns < result[2 + with_input] ? ns : result[2 + with_input];
                }
            }
            char name[32];
            snprintf(name, sizeof name, "%d-cmt%s", ncmt, depot ? " + depot" : "");
            printf("%-22s %12.1f %12.1f %14.1f %14.1f\n", name, result[0], result[1], result[2],
                   result[3]);
        }

    /* The size of ACOP Oral_2CPT: 120 subjects x 66 records, 2 compartments + depot, an
     * oral dose every 12 records, one advance per record; derivatives w.r.t. CL, V, Q, V2
     * and KA (nd = 5). Event handling is not included: this is the floor it adds to. */
    enum { SUBJECTS = 120, RECORDS = 66 };
    const int nd5 = 5;
    popk_linsys s;
    memset(&s, 0, sizeof s);
    s.nd = nd5;
    popk_dual par[5];
    const double values[5] = {3.0, 20.0, 5.0, 40.0, 1.2};
    for (int p = 0; p < 5; p++) {
        par[p] = pd_const(values[p], nd5);
        par[p].d[p] = 1;
    }
    popk_linsys_from_clearances(&s, &par[0], &par[1], &par[2], &par[3], NULL, NULL, &par[4]);
    double best_d = 1e300, best_dual = 1e300;
    for (int rep = 0; rep < REPEATS; rep++) {
        double t0 = now_ns();
        for (int subject = 0; subject < SUBJECTS; subject++) {
            double A[3] = {0, 0, 0};
            for (int record = 0; record < RECORDS; record++) {
                if (record % 12 == 0)
                    A[0] += 100;
                popk_linsys_advance_d(&s, A, NULL, steps[record % STEPS]);
            }
            sink += A[1];
        }
        double ms = (now_ns() - t0) * 1e-6;
        best_d = ms < best_d ? ms : best_d;
        t0 = now_ns();
        for (int subject = 0; subject < SUBJECTS; subject++) {
            popk_dual A[3] = {pd_const(0, nd5), pd_const(0, nd5), pd_const(0, nd5)};
            for (int record = 0; record < RECORDS; record++) {
                if (record % 12 == 0)
                    A[0].v += 100;
                popk_linsys_advance(&s, A, NULL, pd_const(steps[record % STEPS], nd5));
            }
            sink += A[1].d[0];
        }
        ms = (now_ns() - t0) * 1e-6;
        best_dual = ms < best_dual ? ms : best_dual;
    }
    printf("%d x %d records, 2-cmt + depot: %.3f ms doubles, %.3f ms duals (nd = 5)\n",
           SUBJECTS, RECORDS, best_d, best_dual);

    /* The same through the propagator cache as the event loop uses it (one system per
     * subject), with the ACOP pattern of step lengths (repeats) and with every step new. */
    popk_linprop *cache = popk_linprop_new();
    if (!cache)
        return 1;
    printf("%-34s %14s %14s\n", "  through popk_linprop, ms", "doubles", "duals nd=5");
    for (int fresh = 0; fresh <= 1; fresh++) {
        double best[2] = {1e300, 1e300};
        for (int rep = 0; rep < REPEATS; rep++)
            for (int dual = 0; dual <= 1; dual++) {
                s.nd = dual ? nd5 : 0;
                double t0 = now_ns();
                for (int subject = 0; subject < SUBJECTS; subject++) {
                    popk_linprop_set(cache, &s);
                    popk_dual A[3] = {pd_const(0, nd5), pd_const(0, nd5), pd_const(0, nd5)};
                    for (int record = 0; record < RECORDS; record++) {
                        if (record % 12 == 0)
                            A[0].v += 100;
                        double step = fresh ? 0.25 + 1e-3 * (record + RECORDS * subject)
                                            : steps[record % 12];
                        popk_dual dt = pd_const(step, nd5);
                        popk_linprop_advance(cache, A, NULL, &dt);
                    }
                    sink += A[1].v;
                }
                double ms = (now_ns() - t0) * 1e-6;
                best[dual] = ms < best[dual] ? ms : best[dual];
            }
        printf("  %-32s %14.3f %14.3f\n", fresh ? "every step new" : "12 step lengths per subject",
               best[0], best[1]);
    }
    popk_linprop_free(cache);
    (void)sink;
    return 0;
}

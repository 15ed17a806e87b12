/* Tests for report/svgplot: tick positions and labels on linear and log axes, and the SVG a
 * plot renders (element counts, clip reference, dropped non-positive values on log axes,
 * escaping). */
#include "common/popk_test.h"

#include <math.h>
#include <string.h>

#include "report/svgplot.h"

static int count(const char *s, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(s, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

static void test_linear_ticks(void)
{
    double at[64];
    int lab[64];
    /* 0..10 in about 5 steps: step 2. */
    int n = popk_plot_ticks(0.0, 10.0, 0, at, lab, 64);
    CU_ASSERT_EQUAL(n, 6);
    for (int i = 0; i < n; i++) {
        CU_ASSERT_DOUBLE_EQUAL(at[i], 2.0 * i, 1e-12);
        CU_ASSERT(lab[i]);
    }
    /* -0.37..0.81: step 0.25 from -0.25 to 0.75. */
    n = popk_plot_ticks(-0.37, 0.81, 0, at, lab, 64);
    CU_ASSERT_EQUAL(n, 5);
    CU_ASSERT_DOUBLE_EQUAL(at[0], -0.25, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(at[4], 0.75, 1e-12);
    char buf[32];
    popk_plot_tick_label(0.75, 0.25, 0, buf, sizeof buf);
    CU_ASSERT_STRING_EQUAL(buf, "0.75");
    popk_plot_tick_label(2.5, 2.5, 0, buf, sizeof buf);
    CU_ASSERT_STRING_EQUAL(buf, "2.5");
    popk_plot_tick_label(40.0, 20.0, 0, buf, sizeof buf);
    CU_ASSERT_STRING_EQUAL(buf, "40");
    popk_plot_tick_label(0.0, 0.05, 0, buf, sizeof buf);
    CU_ASSERT_STRING_EQUAL(buf, "0.00");
    CU_ASSERT_EQUAL(popk_plot_ticks(1.0, 1.0, 0, at, lab, 64), 0);
}

static void test_log_ticks(void)
{
    double at[64];
    int lab[64];
    /* 0.5 .. 150 (log10 -0.30 .. 2.18): under 2.5 decades, so 1-2-5 labelled. */
    int n = popk_plot_ticks(log10(0.5), log10(150.0), 1, at, lab, 64);
    int labelled = 0;
    char buf[32];
    for (int i = 0; i < n; i++) {
        CU_ASSERT(at[i] >= log10(0.5) - 1e-9 && at[i] <= log10(150.0) + 1e-9);
        if (lab[i]) {
            labelled++;
            popk_plot_tick_label(at[i], 0, 1, buf, sizeof buf);
            double v = atof(buf);
            double mant = v / pow(10.0, floor(log10(v) + 1e-12));
            CU_ASSERT(fabs(mant - 1) < 1e-9 || fabs(mant - 2) < 1e-9 || fabs(mant - 5) < 1e-9);
        }
    }
    /* 0.5 1 2 5 10 20 50 100 */
    CU_ASSERT_EQUAL(labelled, 8);
    /* 1e-3 .. 1e4: decades only are labelled, 8 of them. */
    n = popk_plot_ticks(-3, 4, 1, at, lab, 64);
    labelled = 0;
    for (int i = 0; i < n; i++)
        labelled += lab[i];
    CU_ASSERT_EQUAL(labelled, 8);
    popk_plot_tick_label(-3, 0, 1, buf, sizeof buf);
    CU_ASSERT_STRING_EQUAL(buf, "0.001");
}

/* Lines given as x1 y1 x2 y2 (the identity); axis ticks and grid lines are x1 x2 y1 y2. */
static int diagonal_lines(const char *svg)
{
    int n = 0;
    for (const char *p = strstr(svg, "<line x1=\""); p; p = strstr(p + 1, "<line x1=\"")) {
        const char *q = strchr(p + 10, '"');
        n += q && !strncmp(q, "\" y1=", 5);
    }
    return n;
}

static char *render(popk_plot *p, const char *id)
{
    /* The stream's buffer lives on the heap, so no pointer to a local outlives the call. */
    struct {
        char *buf;
        size_t len;
    } *mem = calloc(1, sizeof *mem);
    FILE *f = open_memstream(&mem->buf, &mem->len);
    CU_ASSERT_FATAL(f != NULL);
    CU_ASSERT_EQUAL(popk_plot_write(p, f, id), 0);
    fclose(f);
    char *out = mem->buf;
    free(mem);
    return out;
}

static void test_render(void)
{
    double x[] = {0.1, 1, 2, 3, 4, 5}, y[] = {1, 2, NAN, -1, 8, 16};
    double lo[] = {0.5, 1, 1.5, 2, 2.5, 3}, hi[] = {2, 3, 4, 5, 6, 7};
    popk_plot *p = popk_plot_new(400, 300);
    CU_ASSERT_FATAL(p != NULL);
    CU_ASSERT_EQUAL(popk_plot_labels(p, "A <title> & more", "time", "conc"), 0);
    popk_plot_style pts = {.color = "#123456", .label = "observed"};
    popk_plot_style line = {.color = "red", .dashed = 1, .label = "model"};
    popk_plot_style band = {.color = "blue", .label = "90% CI"};
    CU_ASSERT_EQUAL(popk_plot_points(p, 6, x, y, &pts), 0);
    CU_ASSERT_EQUAL(popk_plot_line(p, 6, x, y, &line), 0);
    CU_ASSERT_EQUAL(popk_plot_band(p, 6, x, lo, hi, &band), 0);
    CU_ASSERT_EQUAL(popk_plot_hline(p, 0, NULL), 0);
    char *svg = render(p, "t1");
    /* 5 finite points; the legend adds one marker circle. */
    CU_ASSERT_EQUAL(count(svg, "<circle"), 5 + 1);
    /* The NaN splits the line in two polylines. */
    CU_ASSERT_EQUAL(count(svg, "<polyline"), 2);
    CU_ASSERT_EQUAL(count(svg, "<svg "), 1);
    CU_ASSERT_EQUAL(count(svg, "</svg>"), 1);
    CU_ASSERT(strstr(svg, "<clipPath id=\"t1-clip\">") != NULL);
    CU_ASSERT(strstr(svg, "clip-path=\"url(#t1-clip)\"") != NULL);
    CU_ASSERT(strstr(svg, "A &lt;title&gt; &amp; more") != NULL);
    CU_ASSERT(strstr(svg, "<title>") == strstr(svg, "<title>A &lt;"));
    CU_ASSERT_EQUAL(count(svg, ">observed<") + count(svg, ">model<") + count(svg, ">90% CI<"),
                    3);
    free(svg);
    popk_plot_free(p);

    /* Log axes: the non-positive value disappears from points and breaks the line. */
    p = popk_plot_new(300, 200);
    popk_plot_log(p, 0, 1);
    CU_ASSERT_EQUAL(popk_plot_points(p, 6, x, y, NULL), 0);
    CU_ASSERT_EQUAL(popk_plot_identity(p, NULL), 0);
    svg = render(p, "t2");
    CU_ASSERT_EQUAL(count(svg, "<circle"), 4);
    /* Identity on mixed linear/log axes is not a straight line: left out. */
    CU_ASSERT_EQUAL(diagonal_lines(svg), 0);
    free(svg);
    popk_plot_free(p);

    /* On log-log axes the identity is a straight line. */
    p = popk_plot_new(300, 200);
    popk_plot_log(p, 1, 1);
    CU_ASSERT_EQUAL(popk_plot_points(p, 6, x, y, NULL), 0);
    CU_ASSERT_EQUAL(popk_plot_identity(p, NULL), 0);
    svg = render(p, "t4");
    CU_ASSERT_EQUAL(diagonal_lines(svg), 1);
    free(svg);
    popk_plot_free(p);

    /* Points land where the axis mapping says: a single point at the centre of fixed
     * limits [0, 10] x [0, 10] in a 400 x 300 plot with no titles (margins 48, 12, 10, 26). */
    p = popk_plot_new(400, 300);
    popk_plot_limits(p, 0, 10, 0, 10);
    double cx = 5, cy = 5;
    popk_plot_points(p, 1, &cx, &cy, NULL);
    svg = render(p, "t3");
    char expect[64];
    snprintf(expect, sizeof expect, "cx=\"%.1f\" cy=\"%.1f\"", 48 + (400 - 60) / 2.0,
             10 + (300 - 36) / 2.0);
    CU_ASSERT(strstr(svg, expect) != NULL);
    free(svg);
    popk_plot_free(p);

    /* Legend in the bottom-left corner: 6 px inside the plot area (x0 = 48). */
    p = popk_plot_new(400, 300);
    popk_plot_legend_corner(p, 3);
    popk_plot_style lab = {.label = "a"};
    popk_plot_points(p, 1, &cx, &cy, &lab);
    svg = render(p, "t5");
    CU_ASSERT(strstr(svg, "<g class=\"legend\"><rect x=\"54.0\"") != NULL);
    free(svg);
    popk_plot_free(p);
    popk_plot_free(NULL);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("report_svgplot", NULL, NULL);
    CU_add_test(s, "linear ticks", test_linear_ticks);
    CU_add_test(s, "log ticks", test_log_ticks);
    CU_add_test(s, "render", test_render);
    return popk_test_run();
}

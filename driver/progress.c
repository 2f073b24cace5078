/* progress.c: what the driver shows while the pipeline runs, from the
 * library's events (PassOptions.event; the library never prints): on a
 * terminal, the running stage on one line rewritten in place, with samples
 * done, rate and ETA where there are samples, and every stage's wall time for
 * --time-passes. When lines stay, when they are erased and when nothing is
 * shown are in docs/architecture.md, "What the driver shows while it runs". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "driver.h"

/* Redraws per second of a progress line, at most: a terminal over ssh should
 * not be flooded by a fast model. */
#define REDRAW_SECONDS 0.1
/* A stage that takes longer leaves a line with its time; Q8_SLOW_STAGE_SECONDS
 * sets another threshold (the tests use 0: every stage leaves its line). */
#define SLOW_STAGE_SECONDS 1.0

static bool showing(const DriverProgress *p) { return p->tty && !p->opts->quiet; }

/* Erase the progress line, if one is up. */
static void clear_line(DriverProgress *p) {
  if (p->line_open)
    fputs("\r\033[K", stderr);
  p->line_open = false;
}

static void print_text(void *user, const char *text) {
  clear_line(user);
  fputs(text, stderr);
}

static void print_note(void *user, const char *text) {
  clear_line(user);
  fprintf(stderr, "q8c: note: %s\n", text);
}

/* "5 s", "3 min 20 s", "2 h 5 min". */
static void fmt_duration(char *buf, size_t size, double s) {
  long t = (long)(s + 0.5);
  if (t < 60)
    snprintf(buf, size, "%ld s", t);
  else if (t < 3600)
    snprintf(buf, size, "%ld min %ld s", t / 60, t % 60);
  else
    snprintf(buf, size, "%ld h %ld min", t / 3600, t / 60 % 60);
}

/* "calibrate: 512/1024 samples, 93.1 samples/s, ETA 5 s" (the ETA while
 * running, the time taken at the end). */
static void draw_progress(DriverProgress *p, const char *stage, bool final, double now) {
  double elapsed = now - p->begin, running = now - p->rate_begin;
  char tail[96] = "";
  if (p->done > 0 && running > 0) {
    double rate = (double)p->done / running;
    char t[48];
    fmt_duration(t, sizeof t, final ? elapsed : (double)(p->total - p->done) / rate);
    snprintf(tail, sizeof tail, ", %.1f samples/s, %s%s", rate, final ? "" : "ETA ", t);
  }
  fprintf(stderr, "\r%s: %lld/%lld samples%s\033[K%s", stage, (long long)p->done,
          (long long)p->total, tail, final ? "\n" : "");
  p->line_open = !final;
  p->last_draw = now;
  p->draws++;
}

static void on_event(void *user, const PassEvent *e) {
  DriverProgress *p = user;
  double now = pass_clock();
  switch (e->kind) {
  case PASS_EVENT_BEGIN:
    p->begin = now;
    p->progressed = false;
    p->draws = 0;
    if (showing(p)) {
      clear_line(p);
      fprintf(stderr, "q8c: %s...", e->stage);
      p->line_open = true;
    }
    break;
  case PASS_EVENT_PROGRESS:
    /* The rate counts from the first report (0 done, after any set-up such
     * as calibration compiling the model). */
    if (!p->progressed)
      p->rate_begin = now;
    p->done = e->done;
    p->total = e->total;
    p->progressed = true;
    /* The first line with a rate (after one batch) and the last are always
     * drawn; between them a few per second. */
    if (showing(p) && (p->draws < 2 || e->done == e->total ||
                       now - p->last_draw >= REDRAW_SECONDS))
      draw_progress(p, e->stage, false, now);  /* over the line that is up */
    break;
  case PASS_EVENT_END:
    if (p->nstages < DRIVER_MAX_STAGES) {
      snprintf(p->stages[p->nstages].name, sizeof p->stages[0].name, "%s", e->stage);
      p->stages[p->nstages++].seconds = e->seconds;
    }
    if (!showing(p))
      break;
    if (p->progressed) {
      draw_progress(p, e->stage, true, now);
    } else {
      clear_line(p);
      if (e->seconds >= p->slow_stage)
        fprintf(stderr, "q8c: %s: %.1f s\n", e->stage, e->seconds);
    }
    break;
  }
}

void driver_progress_attach(DriverProgress *p, PassOptions *o) {
  memset(p, 0, sizeof *p);
  p->opts = o;
  p->tty = isatty(STDERR_FILENO);
  const char *slow = getenv("Q8_SLOW_STAGE_SECONDS");
  char *end;
  double v = slow && *slow ? strtod(slow, &end) : -1;
  p->slow_stage = v >= 0 && !*end ? v : SLOW_STAGE_SECONDS;
  o->print = print_text;
  o->note = print_note;
  o->event = on_event;
  o->user = p;
}

/* A stage named "STAGE: PART" (calibrate's "calibrate: compile") is a part
 * of the stage it names, which ends after it: not added to the total twice. */
static bool is_part(const char *name) { return strstr(name, ": ") != NULL; }

void driver_print_timing(const DriverProgress *p) {
  double total = 0;
  for (int i = 0; i < p->nstages; i++)
    if (!is_part(p->stages[i].name))
      total += p->stages[i].seconds;
  static const char rule[] =
      "===------------------------------------------------------------------===\n";
  fprintf(stderr, "%s  q8c execution time report (wall clock)\n%s", rule, rule);
  fprintf(stderr, "  %10s  %6s  %s\n", "seconds", "%", "stage");
  for (int i = 0; i < p->nstages; i++)
    fprintf(stderr, "  %10.4f  %5.1f%%  %s\n", p->stages[i].seconds,
            total > 0 ? 100 * p->stages[i].seconds / total : 0.0, p->stages[i].name);
  fprintf(stderr, "  %10.4f  %5.1f%%  total\n", total, total > 0 ? 100.0 : 0.0);
}

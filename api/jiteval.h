/* jiteval.h: the calibration evaluator over the JIT (jiteval.c), which the
 * driver and api.c put in PassOptions.evaluator so that calibration runs
 * compiled code instead of the interpreter, with the same results. */
#ifndef Q8_API_JITEVAL_H
#define Q8_API_JITEVAL_H

#include "../passes/passes.h"

extern const PassEvaluator q8c_jit_evaluator;

#endif

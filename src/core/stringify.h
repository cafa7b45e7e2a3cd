#pragma once
/* LMS_STRINGIFY(LMS_DEFAULT_PIDS) is "256": a numeric macro's value as a string literal, so that help
 * texts and documents say the number the code uses (the macro must be a plain number). */
#define LMS_STRINGIFY_(x) #x
#define LMS_STRINGIFY(x) LMS_STRINGIFY_(x)

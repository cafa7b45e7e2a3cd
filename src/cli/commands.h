#pragma once
/* The subcommands of `lm-sandbox`: each parses its own flags and calls the library. */
int lms_cmd_run(int argc, char **argv);

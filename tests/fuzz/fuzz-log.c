/* snapfs's logging for the fuzz target: every message is formatted (a bad
 * format argument is a bug the sanitizers should see) but printed only with
 * FUZZ_LOG=1, so that libFuzzer's output stays readable and fast.  Debug
 * lines are always formatted too. */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "snapfs.h"

bool snapfs_log_debug_enabled(unsigned area)
{
	return true;
}

void snapfs_log(enum snapfs_log_level level, const char *fmt, ...)
{
	static int print = -1;
	char line[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (print < 0) {
		const char *env = getenv("FUZZ_LOG");

		print = env && *env == '1';
	}
	if (print)
		fprintf(stderr, "snapfs: %s%s\n",
			level == SNAPFS_LOG_DEBUG ? "debug: " : "", line);
}

/* Every line said, as often as asked: nothing is kept between inputs. */
bool snapfs_log_first(const char *key, const char *detail)
{
	(void)key;
	(void)detail;
	return true;
}

/*
 * misbehave.c - workers that fail in one chosen way, for the rollover
 * tests.  Built once per MODE, so that each is a real ELF binary that a
 * test can install over a group's command:
 *
 *   MODE_EXIT      exits with status 1 at once
 *   MODE_NOREADY   never sends READY=1 (stops on SIGTERM)
 *   MODE_CRASH     sends READY=1, then dies of SIGSEGV 300 ms later
 *   MODE_SLOW      takes 1.5 s to start: then it execs $SLOW_EXEC with its
 *                  own arguments (a real server, which says READY=1 itself,
 *                  under the same pid), or without it sends READY=1 and
 *                  waits for SIGTERM
 */
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include "rollover_worker.h"

int main(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	signal(SIGTERM, SIG_DFL);
#if defined(MODE_EXIT)
	return 1;
#elif defined(MODE_NOREADY)
	for (;;)
		pause();
#elif defined(MODE_CRASH)
	rw_notify("READY=1");
	usleep(300 * 1000);
	raise(SIGSEGV);
	return 0;
#elif defined(MODE_SLOW)
	const char *server = getenv("SLOW_EXEC");

	usleep(1500 * 1000);
	if (server != NULL && *server != '\0') {
		argv[0] = (char *)server;
		execv(server, argv);
		return 127;
	}
	rw_notify("READY=1");
	for (;;)
		pause();
#else
#error "define MODE_EXIT, MODE_NOREADY, MODE_CRASH or MODE_SLOW"
#endif
}

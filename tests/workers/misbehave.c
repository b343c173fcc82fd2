/*
 * misbehave.c - workers that fail in one chosen way, for the rollover
 * tests.  Built once per MODE, so that each is a real ELF binary that a
 * test can install over a group's command:
 *
 *   MODE_EXIT      exits with status 1 at once
 *   MODE_NOREADY   never sends READY=1 (stops on SIGTERM)
 *   MODE_CRASH     sends READY=1, then dies of SIGSEGV 300 ms later
 */
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include "rollover_worker.h"

int main(void)
{
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
#else
#error "define MODE_EXIT, MODE_NOREADY or MODE_CRASH"
#endif
}

/* SPDX-License-Identifier: MIT */
/* Placeholder until the daemon's main lands: builds, prints the version. */
#include <stdio.h>
#include "sand/common.h"

int main(void)
{
	printf("sand %s\n", SAND_VERSION);
	return 0;
}

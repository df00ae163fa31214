/* SPDX-License-Identifier: MIT */
/* Placeholder until volctl lands. */
#include <stdio.h>
#include "sand/common.h"

int main(void)
{
	printf("volctl %s\n", SAND_VERSION);
	return 0;
}

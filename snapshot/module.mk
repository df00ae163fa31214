# The thin pool's metadata layer lives one directory down.
LIB_SRCS += $(wildcard snapshot/meta/*.c)

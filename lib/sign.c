/* lib/sign.c - placeholder, being written */

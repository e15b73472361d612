/* lib/qp.c - placeholder, being written */

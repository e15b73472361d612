/* lib/directive.c - placeholder, being written */

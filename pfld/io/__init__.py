"""Files in and out: atomic writes (`atomic`), image files (`images`) and content digests (`digest`)."""

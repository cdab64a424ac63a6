"""Files in and out: atomic writes (`atomic`), image files (`images`), content digests (`digest`) and
paths as a person reads them (`paths`)."""

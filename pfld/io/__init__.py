"""Files in and out: atomic writes (`atomic`) and image files (`images`)."""

"""The school inbox: its store, the delivering worker, the Key Adults, their web pages and e-mail notice."""

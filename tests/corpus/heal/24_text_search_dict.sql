-- corpus: a text search dictionary from a contrib template
CREATE TEXT SEARCH DICTIONARY short_ints (TEMPLATE = intdict_template, MAXLEN = 4);

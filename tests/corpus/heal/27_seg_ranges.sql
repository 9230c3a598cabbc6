-- corpus: measurement intervals with seg
CREATE TABLE measurements (id int, reading seg);

-- The customers as of the end of each day ds from start_ds to end_ds: per day, the latest version of
-- every customer recorded by then. A range template: a batch of days reads the file once.
SELECT c.customer_id, c.customer_name, c.gender, c.city, c.member_level, c.created_at, c.updated_at, d.ds
FROM read_csv({{ source(params.source_dir ~ '/customers.csv') }}, header = true, auto_detect = false,
              columns = {'customer_id': 'BIGINT', 'customer_name': 'VARCHAR', 'gender': 'VARCHAR',
                         'city': 'VARCHAR', 'member_level': 'VARCHAR', 'created_at': 'TIMESTAMP',
                         'updated_at': 'TIMESTAMP'}) AS c
JOIN (SELECT CAST(range AS DATE) AS ds
      FROM range(DATE '{{ start_ds }}', DATE '{{ end_ds }}' + INTERVAL 1 DAY, INTERVAL 1 DAY)) AS d
    ON CAST(c.updated_at AS DATE) <= d.ds
QUALIFY row_number() OVER (PARTITION BY d.ds, c.customer_id ORDER BY c.updated_at DESC) = 1

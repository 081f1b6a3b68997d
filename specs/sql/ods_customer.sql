-- The customers as of the end of day ds: the latest version of every customer recorded by then.
SELECT customer_id, customer_name, gender, city, member_level, created_at, updated_at
FROM read_csv({{ source(params.source_dir ~ '/customers.csv') }}, header = true, auto_detect = false,
              columns = {'customer_id': 'BIGINT', 'customer_name': 'VARCHAR', 'gender': 'VARCHAR',
                         'city': 'VARCHAR', 'member_level': 'VARCHAR', 'created_at': 'TIMESTAMP',
                         'updated_at': 'TIMESTAMP'})
WHERE CAST(updated_at AS DATE) <= DATE '{{ ds }}'
QUALIFY row_number() OVER (PARTITION BY customer_id ORDER BY updated_at DESC) = 1

redis.call('XADD', KEYS[1], 'MAXLEN', '1', '*', 'wake', '1')
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
